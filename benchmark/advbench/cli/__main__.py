"""``python -m advbench.cli``: the ``advbench`` command."""

import sys

from advbench.cli import main

sys.exit(main())
