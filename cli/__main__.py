"""``python -m cli``: the ``nowcast`` command (also ``torchrun -m cli train ...``)."""

import sys

from cli import main

sys.exit(main())
