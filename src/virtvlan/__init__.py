"""virt-vlan: wire libvirt guest taps onto VLANs (access and trunk modes).

This module must stay import-free: the libvirt hook imports it on every
guest start, including untagged guests that must not pay for us.
"""

__version__ = "0.2.0"

# The XML namespace of the domain metadata contract (docs/tagging.md),
# and the prefix we write it with (<vv:vlan xmlns:vv="urn:virt-vlan:1">;
# libvirt keeps the one virDomainSetMetadata is given). The hook drop-in
# (hook/dropin.py) spells NAMESPACE itself: it runs before it may import us.
NAMESPACE = "urn:virt-vlan:1"
PREFIX = "vv"
