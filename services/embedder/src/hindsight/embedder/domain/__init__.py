"""Pure embedder logic: document text, micro-batching, vectors, images. No I/O transports."""
