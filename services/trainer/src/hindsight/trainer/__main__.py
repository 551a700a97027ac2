"""``python -m hindsight.trainer``: settings → app → run."""

from hindsight.trainer.app import main

if __name__ == "__main__":
    main()
