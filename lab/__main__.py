"""Entry point for ``python -m lab``."""

import sys

from .cli import entry

sys.exit(entry())
