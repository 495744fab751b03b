"""`python -m sidyp_client datasets|jobs|models ...`: the client commands without the rest of `sidyp`."""

import sys

from sidyp_client.cli import main

sys.exit(main())
