"""``python -m hindsight.embedder``: settings → app → run."""

from hindsight.embedder.app import main

if __name__ == "__main__":
    main()
