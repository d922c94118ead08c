"""`python -m tamrin` is the `tamrin` command."""

import sys

from tamrin.cli import main

sys.exit(main())
