"""Hindsight memory: Chroma collections, links, search, retention, backup (DESIGN.md)."""
