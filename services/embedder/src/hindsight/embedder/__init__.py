"""Hindsight embedder: CLIP image and MiniLM text embeddings (docs/design.md)."""
