"""`python -m service.cli`: how `jobqueue run` starts its children."""

import sys

from service.cli import main

sys.exit(main())
