"""``python -m miniplm`` (and ``torchrun -m miniplm``) runs the ``miniplm`` command."""

import sys

from miniplm.cli import main

sys.exit(main())
