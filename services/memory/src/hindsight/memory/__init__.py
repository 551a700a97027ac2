"""Hindsight memory: Chroma collections, links, search, retention, backup (docs/design.md)."""
