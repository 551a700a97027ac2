"""``python -m hindsight.market``: settings → app → run."""

from hindsight.market.app import main

if __name__ == "__main__":
    main()
