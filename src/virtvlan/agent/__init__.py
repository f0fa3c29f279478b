"""Entry point: `virt-vlan agent` (hot-plug, heal, reconcile, serving the hooks).

May import every layer below the CLI, the hook handler among them.
"""
