"""`python -m devtools.localkube` is `scripts/cluster`."""

import sys

from devtools.localkube.cli import main

if __name__ == "__main__":  # imported, not run, by tests that walk every module
    sys.exit(main(sys.argv[1:]))
