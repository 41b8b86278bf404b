"""``python -m equipot`` (as used by ``torchrun -m equipot ...``): the ``equipot`` command."""

import sys

from equipot.cli.main import main

sys.exit(main())
