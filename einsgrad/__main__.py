"""``python -m einsgrad``: the ``einsgrad`` command (see :mod:`einsgrad.cli`)."""

from __future__ import annotations

import sys

from einsgrad.cli import main

if __name__ == "__main__":
    sys.exit(main())
