"""Entry point: ``python3 -m kernels.runner``."""
from __future__ import annotations

import sys

from kernels.runner.server import main

if __name__ == "__main__":
    sys.exit(main())
