"""``python -m converters.lopo``: the leave-one-person-out run (run.py)."""

import sys

from converters.lopo.run import main

sys.exit(main())
