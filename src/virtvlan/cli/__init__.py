"""Entry point: the `virt-vlan` command (console script virtvlan.cli:main, `python -m virtvlan.cli`).

May import every layer below it, and the agent.
"""

from virtvlan.cli.commands import build_parser, main

__all__ = ["build_parser", "main"]
