"""`python -m load.bench`: run the benchmark (see load/bench/run.py)."""

import sys

from load.bench.run import main

sys.exit(main())
