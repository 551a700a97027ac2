"""``python -m hindsight.registry``: settings -> app -> run."""

from hindsight.registry.app import run

if __name__ == "__main__":
    run()
