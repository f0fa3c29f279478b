"""nlconst is the one home of rtnetlink constants and layouts; rtnl's small
attribute helpers that the link monitor shares."""

import ast
import pathlib
import struct

from virtvlan.host import nlconst, rtnl

SRC = pathlib.Path(__file__).resolve().parents[2] / "src" / "virtvlan"
KERNEL_PREFIXES = ("NLMSG_", "NLM_F_", "RTM_", "RTMGRP_", "RTNLGRP_", "IFLA_", "IFA_", "RTA_",
                   "RTN_", "RTPROT_", "RT_TABLE_", "BRIDGE_VLAN_INFO_", "AF_BRIDGE", "IFF_",
                   "SOL_NETLINK", "NETLINK_", "SO_RCVBUF", "RTEXT_", "CLONE_NEWNET")


def _module_level_names(path: pathlib.Path):
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else [])
        for target in targets:
            for name in ast.walk(target):
                if isinstance(name, ast.Name):
                    yield name.id, node


def test_no_other_module_defines_a_netlink_constant_or_layout():
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "nlconst.py":
            continue
        for name, node in _module_level_names(path):
            value = getattr(node, "value", None)
            is_struct = (isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute)
                         and value.func.attr == "Struct")
            if name.lstrip("_").startswith(KERNEL_PREFIXES) or (
                    is_struct and "MSG" in name.upper()):
                found.append("%s: %s" % (path.relative_to(SRC), name))
    assert found == []


def test_layouts_have_the_kernel_sizes():
    # sizeof() of the C structs on every Linux ABI (all fields naturally aligned).
    assert (nlconst.NLMSGHDR.size, nlconst.RTATTR.size, nlconst.IFINFOMSG.size,
            nlconst.IFADDRMSG.size, nlconst.RTMSG.size, nlconst.BR_VLAN_MSG.size) == \
        (16, 4, 16, 8, 12, 8)


def test_attr_helpers():
    attrs = rtnl.attributes(struct.pack("=HH", 8, nlconst.IFLA_MASTER) + struct.pack("=I", 7)
                            + struct.pack("=HH", 9, nlconst.IFLA_IFNAME) + b"br0\xff\0\0\0\0")
    assert rtnl.attr_u32(attrs, nlconst.IFLA_MASTER) == 7
    assert rtnl.attr_u32(attrs, nlconst.IFLA_MTU) is None
    name = rtnl.attr_text(attrs[nlconst.IFLA_IFNAME])
    assert name == "br0\udcff"  # not UTF-8: kept, as a surrogate escape
    assert name.encode("utf-8", "surrogateescape") == b"br0\xff"


def test_netns_path_takes_a_name_or_a_path():
    assert rtnl.netns_path("blue") == nlconst.NETNS_RUN_DIR + "/blue"
    assert rtnl.netns_path("/proc/1/ns/net") == "/proc/1/ns/net"
