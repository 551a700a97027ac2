"""``python -m hindsight.devstack.replay``: run the replay feeder (a supervisable child)."""

import sys

from .cli import main

sys.exit(main())
