"""The one exception hierarchy of virt-vlan.

Every message is one line that names the object, the bad value and the fix,
so that it can be shown as-is by virsh, the CLI and the journal.
"""

# Characters of one error line: libvirt copies a hook's line into its error
# and its log, so hostile input quoted in it must not make it megabytes.
LINE_MAX = 500
QUOTE_MAX = 40  # characters of one value quoted from input


def cut(text: str, limit: int = QUOTE_MAX) -> str:
    """`text`, or its start and "..." when longer than `limit` characters:
    for values quoted from input (a VLAN list, a MAC, an uplink name)."""
    return text if len(text) <= limit else text[:max(limit - 3, 0)] + "..."


def one_line(message: object, limit: int = LINE_MAX) -> str:
    """`message` folded onto one line of at most `limit` characters. A longer
    one keeps its start (the object and value) and its end (the fix)."""
    text = " ".join(str(message).split())
    if len(text) <= limit:
        return text
    tail = limit // 3
    return text[:limit - tail - 5] + " ... " + text[len(text) - tail:]


class VirtVlanError(Exception):
    """Base class: anything virt-vlan refuses or fails to do.

    The message is folded onto one line of at most LINE_MAX characters:
    values quoted from hostile input (an XML attribute with a newline,
    lxml's error text, a megabyte VLAN list) must not break the one-line
    contract that virsh and the journal rely on.
    """

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


class InputError(VirtVlanError):
    """Bad domain XML, config file or command-line argument. Nothing changed."""


class Refused(VirtVlanError):
    """The planner will not produce the requested state (it would be unsafe)."""


class ApplyError(VirtVlanError):
    """The kernel rejected an action; what this run did was rolled back."""


class LockTimeout(VirtVlanError):
    """Another virt-vlan process held the host-wide lock for too long."""
