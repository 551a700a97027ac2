"""Hindsight embedder: CLIP image and MiniLM text embeddings (DESIGN.md)."""
