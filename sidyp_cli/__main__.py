"""`python -m sidyp_cli`: the same as the `sidyp` console script."""

import sys

from sidyp_cli.main import main

# Guarded: a spawned worker process re-imports the main module and must not run the CLI again.
if __name__ == "__main__":
    sys.exit(main())
