"""`python -m pipeline` is the `krux-export` command."""

import sys

from pipeline.commands.cli import main

sys.exit(main())
