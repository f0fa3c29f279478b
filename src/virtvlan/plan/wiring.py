"""Which bridge a guest port joins, and whose VLAN table a trunk bridge is.

One copy of each rule, for the planner, the engine, the agent, the CLI and
the checks alike. Pure: config and links in, names and answers out.
"""

from typing import Optional, Protocol, Tuple

from virtvlan.model import ACCESS, Link
from virtvlan.parse.config import Config, Uplink


class Wish(Protocol):
    """What a Want and a metadata VlanSpec have in common (read-only)."""

    @property
    def uplink(self) -> Optional[str]: ...

    @property
    def mode(self) -> str: ...

    @property
    def vlans(self) -> Tuple[int, ...]: ...


def uplink_bridge(uplink: Uplink, mode: str, vlans: Tuple[int, ...]) -> str:
    """The bridge a port of `mode` on `uplink` joins: the access bridge of its
    one VLAN, or the uplink's trunk bridge."""
    return uplink.access_bridge(vlans[0]) if mode == ACCESS else uplink.trunk_bridge


def bridge_for(wish: Wish, config: Config, who: str = "") -> str:
    """The bridge the port of `wish` (a Want or a VlanSpec) joins.

    Raises InputError (naming `who`, else the want's own `who`) when the
    config has no such uplink.
    """
    uplink = config.uplink(wish.uplink, who or getattr(wish, "who", "") or "request")
    return uplink_bridge(uplink, wish.mode, wish.vlans)


def owns_vlans(bridge: Link, uplink: Uplink) -> bool:
    """A trunk bridge whose VLAN entries virt-vlan manages fully: one it
    created, or an admin's that the config hands over (trunk-filtering)."""
    return bridge.managed or uplink.trunk_filtering


def filters(bridge: Optional[Link], uplink: Uplink) -> bool:
    """Whether trunk bridge `bridge` of `uplink` filters VLANs, or will once
    virt-vlan plans for it: it does already, or it is owned (owns_vlans) and
    gets converted. Never for a bridge whose VLAN tables were not read
    (vlans None): nothing is judged or programmed against unknown tables."""
    return (bridge is not None and bridge.vlans is not None
            and (bridge.vlan_filtering or owns_vlans(bridge, uplink)))
