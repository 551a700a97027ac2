"""``python -m hindsight.devstack`` is the ``hindsight`` command."""

import sys

from .cli import main

sys.exit(main())
