"""``python -m generator``: see generator/cli.py."""

import sys

from generator.cli.main import main

sys.exit(main())
