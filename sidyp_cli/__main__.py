import sys

from sidyp_cli.main import main

sys.exit(main())
