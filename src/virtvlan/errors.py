"""The one exception hierarchy of virt-vlan.

Every message is one line that names the object, the bad value and the fix,
so that it can be shown as-is by virsh, the CLI and the journal.
"""


class VirtVlanError(Exception):
    """Base class: anything virt-vlan refuses or fails to do.

    The message is folded onto one line: values quoted from hostile input
    (an XML attribute with a newline, lxml's error text) must not break the
    one-line contract that virsh and the journal rely on.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class InputError(VirtVlanError):
    """Bad domain XML, config file or command-line argument. Nothing changed."""


class Refused(VirtVlanError):
    """The planner will not produce the requested state (it would be unsafe)."""


class ApplyError(VirtVlanError):
    """The kernel rejected an action; what this run did was rolled back."""


class LockTimeout(VirtVlanError):
    """Another virt-vlan process held the host-wide lock for too long."""
