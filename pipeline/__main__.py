"""`python -m pipeline` is the `krux-export` command."""

import sys

from pipeline.cli import main

sys.exit(main())
