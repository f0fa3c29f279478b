"""Shared fixtures for the pure unit tests: parsed host configs.

Links and snapshots are built inline with model.Link / model.Snapshot in the
tests themselves (they read better than another layer of helpers); what is
shared here is the config text the planner tests run against.
"""

import textwrap

import pytest

from virtvlan.parse import config

# Access wiring: eth0 carries VLAN devices eth0.<V>, each feeding br0<V>.
ACCESS_CONF = """\
[uplink eth0]
allowed-vlans = 5,7,100-110
"""

# Trunk wiring: eth1 is a port of br0, which feeds br0<V> from br0.<V>.
TRUNK_CONF = """\
[uplink eth1]
wiring = trunk
allowed-vlans = 5,7,100-110
"""

# Both at once, as on a host with a guest NIC and a trunk NIC.
MIXED_CONF = """\
[global]
default-uplink = eth0

[uplink eth0]
allowed-vlans = 5,7

[uplink eth1]
wiring = trunk
allowed-vlans = 5,7,100-110
host-vlans = 10
"""


def parse_config(text: str, path: str = "test.conf") -> config.Config:
    return config.parse(textwrap.dedent(text), path)


@pytest.fixture(scope="session")
def make_config():
    """Factory: config text (dedented) -> Config, path 'test.conf'."""
    return parse_config


@pytest.fixture(scope="session")
def access_config() -> config.Config:
    return parse_config(ACCESS_CONF)


@pytest.fixture(scope="session")
def trunk_config() -> config.Config:
    return parse_config(TRUNK_CONF)


@pytest.fixture(scope="session")
def mixed_config() -> config.Config:
    return parse_config(MIXED_CONF)

