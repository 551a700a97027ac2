"""Pure logic of the memory service: no NATS, Chroma or SQL imports here."""
