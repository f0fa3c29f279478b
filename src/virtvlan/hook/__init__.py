"""Entry point: the libvirt hooks (`qemu`, `network`) behind the drop-in.

May import: apply, plan, host, parse, model, errors; never libvirt. Installed
drop-ins run `from virtvlan.hook import run`: keep `run` (and `serve`, which
the agent calls) here. Importing this package loads no lxml, pyroute2 or libvirt.
"""

from virtvlan.hook.handler import run, serve

__all__ = ["run", "serve"]
