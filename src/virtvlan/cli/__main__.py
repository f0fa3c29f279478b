"""`python -m virtvlan.cli`: what the agent's systemd unit runs."""

import sys

from virtvlan.cli.main import main

sys.exit(main())
