"""``python -m hindsight.devstack`` is the ``hindsight`` command (:mod:`hindsight.ops.cli`)."""

import sys

from hindsight.ops.cli import main

sys.exit(main())
