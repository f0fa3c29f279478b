"""virt-vlan: wire libvirt guest taps onto VLANs (access and trunk modes).

This module must stay import-free: the libvirt hook imports it on every
guest start, including untagged guests that must not pay for us.
"""

__version__ = "0.2.0"

# The XML namespace of the domain metadata contract (README, "Metadata").
NAMESPACE = "urn:virt-vlan:1"
