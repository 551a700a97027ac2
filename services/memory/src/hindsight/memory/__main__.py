"""``python -m hindsight.memory``: settings → app → run."""

from hindsight.memory.app import main

if __name__ == "__main__":
    main()
