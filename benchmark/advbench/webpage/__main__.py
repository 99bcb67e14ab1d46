"""``python -m advbench.webpage [DIR]``: rebuild DIR/index.html from its results.csv and plots."""

import sys

from advbench.webpage import main

sys.exit(main())
