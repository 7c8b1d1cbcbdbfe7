"""``python -m ommatidia.cli``: the `ommatidia` command line."""

import sys

from . import main

sys.exit(main())
