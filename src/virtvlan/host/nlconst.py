"""rtnetlink constants and message layouts: the one place they are spelled.

Kernel ABI values from linux/netlink.h, rtnetlink.h, if_link.h, if_addr.h,
if_bridge.h and asm-generic/socket.h, and the names iproute2's `ip` gives
protocols and scopes. rtnl.py (the dump reader), agent/monitor.py (the
link-event listener) and the apply layer use these; nothing here does I/O.
Stdlib only (`_socket`, `struct`): the hook imports this on tagged calls.
"""

# _socket, not socket: see rtnl.py (import cost on every hook call).
import _socket
import struct

# --- netlink messages (netlink.h) --------------------------------------------------------
NLMSG_ERROR, NLMSG_DONE, NLMSG_OVERRUN = 2, 3, 4
NLM_F_REQUEST, NLM_F_DUMP, NLM_F_DUMP_INTR = 0x1, 0x300, 0x10
SOL_NETLINK, NETLINK_ADD_MEMBERSHIP = 270, 1
# Strict checking of dump requests (Linux 4.20+): the kernel then honours
# the filters in the request header and attributes (ifa_index, RTA_OIF).
NETLINK_GET_STRICT_CHK = 12
SO_RCVBUFFORCE = 33  # asm-generic/socket.h; Python's socket module lacks it

# --- rtnetlink message types and multicast groups (rtnetlink.h) ---------------------------
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_GETADDR, RTM_GETROUTE = 22, 26
RTM_NEWADDR, RTM_DELADDR, RTM_NEWROUTE, RTM_DELROUTE = 20, 21, 24, 25
RTM_NEWVLAN, RTM_DELVLAN, RTM_GETVLAN = 112, 113, 114
RTMGRP_LINK = 0x1  # legacy bitmask for RTNLGRP_LINK (1)
# Legacy bitmasks of RTNLGRP_IPV4_IFADDR (5), IPV4_ROUTE (7), IPV6_IFADDR (9), IPV6_ROUTE (11).
RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_IFADDR, RTMGRP_IPV6_ROUTE = \
    0x10, 0x40, 0x100, 0x400
RTNLGRP_BRVLAN = 33  # Linux 5.8+; groups above 32 need NETLINK_ADD_MEMBERSHIP
# nftables change notifications (linux/netlink.h, linux/netfilter/nfnetlink.h).
NETLINK_NETFILTER, NFNLGRP_NFTABLES = 12, 7

# --- link attributes (if_link.h) -----------------------------------------------------------
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER = 1, 3, 4, 5, 10
IFLA_LINKINFO, IFLA_IFALIAS, IFLA_EXT_MASK, IFLA_AF_SPEC, IFLA_LINK_NETNSID = 18, 20, 29, 26, 37
IFLA_INFO_KIND, IFLA_INFO_DATA, IFLA_VLAN_ID = 1, 2, 1
# A port's IFLA_LINKINFO also names its master's kind and carries the port
# options (for a bridge port: the IFLA_BRPORT_* attributes).
IFLA_INFO_SLAVE_KIND, IFLA_INFO_SLAVE_DATA = 4, 5
RTEXT_FILTER_SKIP_STATS = 1 << 3  # link messages without their statistics
# Bridge port flags: AF_BRIDGE link messages of a port carry IFLA_PROTINFO
# with IFLA_BRPORT_* inside (u8 each).
IFLA_PROTINFO, IFLA_BRPORT_LEARNING, IFLA_BRPORT_ISOLATED, IFLA_BRPORT_LOCKED = 12, 8, 33, 39
# Bridge IFLA_INFO_DATA (enum IFLA_BR_*).
IFLA_BR_STP_STATE, IFLA_BR_VLAN_FILTERING = 5, 7
IFLA_BR_NF_CALL_IPTABLES, IFLA_BR_VLAN_DEFAULT_PVID = 36, 39
IFF_UP = 0x1

# --- bridge VLAN tables (if_bridge.h) ------------------------------------------------------
# AF_BRIDGE link messages: IFLA_AF_SPEC holds IFLA_BRIDGE_VLAN_INFO entries
# (struct bridge_vlan_info {u16 flags; u16 vid}).
AF_BRIDGE, IFLA_BRIDGE_VLAN_INFO = 7, 2
RTEXT_FILTER_BRVLAN_COMPRESSED = 1 << 2
BRIDGE_VLAN_INFO_PVID, BRIDGE_VLAN_INFO_UNTAGGED = 0x2, 0x4
BRIDGE_VLAN_INFO_RANGE_BEGIN, BRIDGE_VLAN_INFO_RANGE_END = 0x8, 0x10
# RTM_NEWVLAN/DELVLAN (Linux 5.8+): br_vlan_msg, then BRIDGE_VLANDB_ENTRY
# nests holding ENTRY_INFO (struct bridge_vlan_info) and, for a run of
# VIDs, ENTRY_RANGE (u16, the last VID).
BRIDGE_VLANDB_ENTRY, BRIDGE_VLANDB_ENTRY_INFO, BRIDGE_VLANDB_ENTRY_RANGE = 1, 1, 2

# --- addresses and routes (if_addr.h, rtnetlink.h) -------------------------------------------
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST, IFA_FLAGS = 1, 2, 4, 8
IFA_F_NODAD, IFA_F_PERMANENT = 0x02, 0x80
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC = 1, 4, 5, 6, 7
RTA_TABLE, RTA_VIA, RTA_NH_ID = 15, 18, 30
RTN_UNICAST, RTPROT_KERNEL, RT_TABLE_LOCAL = 1, 2, 255

# --- network namespaces --------------------------------------------------------------------
CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"  # where `ip netns add` bind-mounts namespaces

# --- the names `ip` prints and accepts (iproute2's rt_protos and rt_scopes) -----------------
# The snapshot readers name values with these, the executor maps names back.
# 17 (mrouted) has no name in rt_protos, so `ip` shows the number.
PROTOS = {0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static", 8: "gated",
          9: "ra", 10: "mrt", 11: "zebra", 12: "bird", 13: "dnrouted", 14: "xorp",
          15: "ntk", 16: "dhcp", 18: "keepalived", 42: "babel", 99: "openr", 186: "bgp",
          187: "isis", 188: "ospf", 189: "rip", 192: "eigrp"}
# Address dumps call scope 0 "global", route dumps "universe" (as `ip` does).
ADDR_SCOPES = {0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere"}
ROUTE_SCOPES = {**ADDR_SCOPES, 0: "universe"}
FAMILIES = {_socket.AF_INET: "inet", _socket.AF_INET6: "inet6"}

# --- message layouts -----------------------------------------------------------------------
NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
RTATTR = struct.Struct("=HH")  # rta_len, rta_type
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
RTMSG = struct.Struct("=BBBBBBBBI")  # family dst_len src_len tos table proto scope type flags
BR_VLAN_MSG = struct.Struct("=BBHI")  # family, reserved1, reserved2, ifindex (br_vlan_msg)

# One receive buffer: the kernel fills a dump datagram up to ~32 KiB.
BUFSIZE = 65536
