"""`python -m virtvlan.cli`: what the agent's systemd unit runs."""

import sys

from virtvlan.cli.commands import main

sys.exit(main())
