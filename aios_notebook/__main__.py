"""``python -m aios_notebook`` is the ``aios-notebook`` command."""

import sys

from .cli import main

sys.exit(main())
