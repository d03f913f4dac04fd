"""``python -m reslab`` (and ``torchrun -m reslab``) runs the command line."""

import sys

from reslab.cli import main

sys.exit(main())
