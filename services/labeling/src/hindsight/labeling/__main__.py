"""``python -m hindsight.labeling``: settings → app → run."""

from hindsight.labeling.app import main

if __name__ == "__main__":
    main()
