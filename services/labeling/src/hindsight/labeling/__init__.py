"""Hindsight labeling: the keyboard-first labeling UI and label records (docs/design.md)."""
