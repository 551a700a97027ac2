"""Pure labeling logic: keymap, agreement, label records, exports, passwords (no I/O)."""
