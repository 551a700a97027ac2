"""``python -m hindsight.ops`` is the ``hindsight`` command."""

import sys

from .cli import main

sys.exit(main())
