"""config.py: the host config INI, its defaults, templates and every refusal.

Refusals are pinned by message; each names the file and line ("test.conf:N").
"""

import re

import pytest

from virtvlan.parse import config
from virtvlan.errors import InputError

KNOWN_UPLINK_KEYS = ("access-bridge, access-feed, allowed-exceptions, allowed-vlans, device, "
                     "host-vlans, keep-empty-bridges, mtu, port-security, trunk-bridge, "
                     "trunk-filtering, trunk-vlan-name, wiring")


def refused(make_config, text, message):
    """Assert that config `text` is refused with exactly `message`."""
    with pytest.raises(InputError) as info:
        make_config(text)
    assert str(info.value) == message
    return info.value


# --- defaults -----------------------------------------------------------------


def test_first_uplink_defaults_to_access_wiring_br0_names(make_config):
    uplink, = make_config("[uplink eth0]\nallowed-vlans = 5\n").uplinks
    assert (uplink.name, uplink.position, uplink.device, uplink.wiring) == ("eth0", 0, "eth0",
                                                                            "access")
    assert uplink.access_bridge(5) == "br05"
    assert uplink.feed(5) == "eth0.5"
    assert uplink.feed_parent() == "eth0"
    assert uplink.trunk_bridge == "br0"


def test_trunk_wiring_feeds_access_bridges_from_the_trunk_bridge(make_config):
    uplink, = make_config("[uplink eth0]\nwiring = trunk\nallowed-vlans = 5\n").uplinks
    assert uplink.wiring == "trunk"
    assert uplink.trunk_bridge == "br0"
    assert uplink.feed(5) == "br0.5"
    assert uplink.feed_parent() == "br0"
    assert uplink.access_bridge(5) == "br05"


def test_second_uplink_gets_position_1_names(make_config):
    first, second = make_config("""
        [uplink eth0]
        allowed-vlans = 5
        [uplink eth1]
        allowed-vlans = 5
    """).uplinks
    assert second.position == 1
    assert (second.trunk_bridge, second.access_bridge(5), second.feed(5)) == ("br1", "br15",
                                                                              "eth1.5")


def test_global_defaults(make_config):
    conf = make_config("[uplink eth0]\nallowed-vlans = 5\n")
    uplink, = conf.uplinks
    assert conf.path == "test.conf"
    assert conf.default_uplink == "eth0"
    assert conf.lock_timeout == 30.0
    assert uplink.keep_empty_bridges is False
    assert uplink.host_vlans == ()
    assert uplink.where == "test.conf:1"


def test_allowed_vlans_expand_ranges(make_config):
    uplink, = make_config("[uplink eth0]\nallowed-vlans = 5,7,100-110\n").uplinks
    assert uplink.allowed_vlans == frozenset({5, 7} | set(range(100, 111)))


def test_empty_file_has_no_uplinks(make_config):
    conf = make_config("# nothing yet\n")
    assert conf.uplinks == ()
    assert conf.default_uplink is None


def test_comments_and_blank_lines_are_ignored(make_config):
    conf = make_config("""
        # full-line comment
        ; another one
        [uplink eth0]   # inline comment
        allowed-vlans = 5,7   ; inline comment

        keep-empty-bridges = yes # keep them
    """)
    uplink, = conf.uplinks
    assert uplink.allowed_vlans == frozenset({5, 7})
    assert uplink.keep_empty_bridges is True


def test_section_header_spacing_is_normalised(make_config):
    uplink, = make_config("[  uplink   eth0 ]\nallowed-vlans = 5\n").uplinks
    assert uplink.name == "eth0"


@pytest.mark.parametrize("text, value", [("yes", True), ("True", True), ("on", True),
                                         ("1", True), ("no", False), ("FALSE", False),
                                         ("off", False), ("0", False)])
def test_keep_empty_bridges_booleans(make_config, text, value):
    uplink, = make_config("[uplink eth0]\nallowed-vlans = 5\nkeep-empty-bridges = %s\n"
                          % text).uplinks
    assert uplink.keep_empty_bridges is value


def test_default_uplink_and_lock_timeout_from_global(make_config):
    conf = make_config("""
        [global]
        default-uplink = eth1
        lock-timeout = 2.5
        [uplink eth0]
        allowed-vlans = 5
        [uplink eth1]
        allowed-vlans = 7
    """)
    assert conf.default_uplink == "eth1"
    assert conf.lock_timeout == 2.5


def test_host_vlans_on_trunk_wiring(make_config):
    uplink, = make_config("""
        [uplink eth0]
        wiring = trunk
        allowed-vlans = 5
        host-vlans = 10,20-21
    """).uplinks
    assert uplink.host_vlans == (10, 20, 21)
    assert uplink.trunk_vlan(10) == "br0.10"


# --- templates ----------------------------------------------------------------


def test_templates_fill_every_placeholder(make_config):
    uplink, = make_config("""
        [uplink lan]
        device = enp{n}s0
        allowed-vlans = 5
        access-bridge = {uplink}-v{vlan}
        access-feed = {device}v{vlan}
    """).uplinks
    assert uplink.device == "enp0s0"
    assert uplink.access_bridge(5) == "lan-v5"
    assert uplink.feed(5) == "enp0s0v5"


def test_trunk_templates(make_config):
    uplink, = make_config("""
        [uplink lan]
        device = eno1
        wiring = trunk
        trunk-bridge = tr-{device}
        trunk-vlan-name = {bridge}v{vlan}
        access-bridge = vl{vlan}
        allowed-vlans = 5
    """).uplinks
    assert uplink.trunk_bridge == "tr-eno1"
    assert uplink.feed(5) == "tr-eno1v5"
    assert uplink.feed_parent() == "tr-eno1"
    assert uplink.access_bridge(5) == "vl5"


def test_template_with_unknown_placeholder(make_config):
    refused(make_config, "[uplink eth0]\nallowed-vlans = 5\naccess-bridge = br{vid}\n",
            "config test.conf:3: access-bridge = br{vid} in [uplink eth0] uses {vid}; it may use "
            "only {bridge}, {device}, {n}, {uplink}, {vlan}")


def test_device_template_may_not_use_vlan(make_config):
    refused(make_config, "[uplink eth0]\nallowed-vlans = 5\ndevice = eth{vlan}\n",
            "config test.conf:3: device = eth{vlan} in [uplink eth0] uses {vlan}; it may use "
            "only {n}, {uplink}")


def test_template_with_positional_placeholder(make_config):
    refused(make_config, "[uplink eth0]\nallowed-vlans = 5\naccess-feed = eth0.{}\n",
            "config test.conf:3: access-feed = eth0.{} in [uplink eth0] uses {}; it may use "
            "only {bridge}, {device}, {n}, {uplink}, {vlan}")


@pytest.mark.parametrize("key", ["access-bridge", "access-feed", "trunk-vlan-name"])
def test_per_vlan_template_must_contain_vlan(make_config, key):
    refused(make_config, "[uplink eth0]\nallowed-vlans = 5\n%s = br{n}\n" % key,
            "config test.conf:3: %s = br{n} in [uplink eth0] must contain {vlan}, or every VLAN "
            "gets the same name" % key)


def test_template_with_broken_braces(make_config):
    refused(make_config, "[uplink eth0]\nallowed-vlans = 5\naccess-bridge = br{vlan\n",
            "config test.conf:3: access-bridge = br{vlan in [uplink eth0] is not a valid template "
            "(expected '}' before end of string); use placeholders like {vlan}")


@pytest.mark.parametrize("template, field, name", [
    ("br{vlan:{foo}}", "{vlan:{foo}}", "vlan"),  # would raise KeyError at format time
    ("br{uplink:d}{vlan}", "{uplink:d}", "uplink"),  # would raise ValueError
    ("br{vlan:x}", "{vlan:x}", "vlan"),  # would give hex names
    ("br{vlan!r}", "{vlan!r}", "vlan"),
])
def test_template_with_format_spec(make_config, template, field, name):
    refused(make_config, "[uplink eth0]\nallowed-vlans = 5\naccess-bridge = %s\n" % template,
            "config test.conf:3: access-bridge = %s in [uplink eth0] is not a valid template "
            "(%s has a format spec; write {%s}); use placeholders like {vlan}"
            % (template, field, name))


def test_generated_name_longer_than_15_for_an_allowed_vlan(make_config):
    # "enp129s0f1np1.5" is exactly 15 and fine; VLAN 4094 makes it 18.
    refused(make_config, "[uplink lan]\ndevice = enp129s0f1np1\nallowed-vlans = 5,4094\n",
            "config test.conf:1: access-feed gives 'enp129s0f1np1.4094' for VLAN 4094 in "
            "[uplink lan]: 18 bytes, Linux allows 15; use a shorter template")


def test_long_name_is_reported_at_the_template_line(make_config):
    refused(make_config,
            "[uplink eth0]\nallowed-vlans = 5,4094\naccess-bridge = guests-vlan-{vlan}\n",
            "config test.conf:3: access-bridge gives 'guests-vlan-4094' for VLAN 4094 in "
            "[uplink eth0]: 16 bytes, Linux allows 15; use a shorter template")


def test_host_vlan_names_are_length_checked_too(make_config):
    with pytest.raises(InputError, match=r"^config test\.conf:1: trunk-vlan-name gives "
                                         r"'enp129s0f1np1.4000' for VLAN 4000 in \[uplink lan\]"):
        make_config("[uplink lan]\ndevice = enp129s0f1np1\nwiring = trunk\n"
                    "trunk-bridge = {device}\nallowed-vlans = 5\nhost-vlans = 4000\n")


def test_device_name_longer_than_15(make_config):
    refused(make_config, "[uplink lan]\ndevice = a-very-long-nic-name\nallowed-vlans = 5\n",
            "config test.conf:2: device gives 'a-very-long-nic-name' in [uplink lan]: 20 "
            "bytes, Linux allows 15; use a shorter template")


@pytest.mark.parametrize("device", ["eth0/1", "eth0:1"])
def test_device_name_with_forbidden_characters(make_config, device):
    refused(make_config, "[uplink lan]\ndevice = %s\nallowed-vlans = 5\n" % device,
            "config test.conf:2: device gives %r in [uplink lan]: not a valid interface name "
            "(no '/', ':', spaces or NUL); fix the template" % device)


def test_two_uplinks_whose_templates_make_the_same_name(make_config):
    # Uplink positions 1 and 11 with the default br{n}{vlan}: VLAN 15 of the
    # first and VLAN 5 of the second are both "br115".
    sections = []
    for n in range(12):
        vlan = {1: "15", 11: "5"}.get(n, "3000")
        sections.append("[uplink eth%d]\nallowed-vlans = %s\n" % (n, vlan))
    text = "".join(sections)
    line_of_eth11 = text.splitlines().index("[uplink eth11]") + 1
    refused(make_config, text,
            "config test.conf:%d: access-bridge of uplink eth1 for VLAN 15 and access-bridge of "
            "uplink eth11 for VLAN 5 are both named 'br115'; change a naming template so names "
            "cannot collide" % line_of_eth11)


def test_two_uplinks_with_the_same_explicit_template(make_config):
    refused(make_config, """\
[uplink eth0]
allowed-vlans = 5
access-bridge = vl{vlan}
[uplink eth1]
allowed-vlans = 5-6
access-bridge = vl{vlan}
""", "config test.conf:4: access-bridge of uplink eth0 for VLAN 5 and access-bridge of uplink "
     "eth1 for VLAN 5 are both named 'vl5'; change a naming template so names cannot collide")


def test_uplink_device_named_like_another_uplinks_bridge(make_config):
    refused(make_config, "[uplink eth0]\nallowed-vlans = 5\n[uplink br05]\nallowed-vlans = 7\n",
            "config test.conf:1: device of uplink br05 and access-bridge of uplink eth0 for VLAN 5 "
            "are both named 'br05'; change a naming template so names cannot collide")


def test_access_bridge_named_like_its_own_feed(make_config):
    with pytest.raises(InputError, match=r"access-bridge of uplink eth0 for VLAN 5 and "
                                         r"access-feed of uplink eth0 for VLAN 5 are both named "
                                         r"'eth0\.5'"):
        make_config("[uplink eth0]\nallowed-vlans = 5\naccess-bridge = {device}.{vlan}\n")


def test_two_uplinks_on_one_device(make_config):
    refused(make_config, """\
[uplink lan]
device = eth0
allowed-vlans = 5
[uplink dmz]
device = eth0
allowed-vlans = 7
""", "config test.conf:4: uplinks lan and dmz (at test.conf:1) both use device eth0; one "
     "device is one uplink")


# --- syntax refusals ----------------------------------------------------------


def test_unknown_key_in_uplink(make_config):
    refused(make_config, "[uplink eth0]\nallowed-vlans = 5\nallowed-vlan = 7\n",
            "config test.conf:3: unknown key 'allowed-vlan' in [uplink eth0]; known keys: "
            + KNOWN_UPLINK_KEYS)


def test_unknown_key_in_global(make_config):
    refused(make_config, "[global]\ndefault_uplink = eth0\n",
            "config test.conf:2: unknown key 'default_uplink' in [global]; known keys: "
            "default-uplink, lock-timeout, reconcile-interval")


@pytest.mark.parametrize("header", ["uplinks eth0", "uplink", "uplink eth0 eth1", "Global"])
def test_unknown_section(make_config, header):
    refused(make_config, "[%s]\nallowed-vlans = 5\n" % header,
            "config test.conf:1: unknown section [%s]; use [global] or [uplink NAME]" % header)


def test_unterminated_section_header(make_config):
    refused(make_config, "[uplink eth0\nallowed-vlans = 5\n",
            "config test.conf:1: '[uplink eth0' is not a section header; write [uplink NAME]")


def test_line_that_is_not_key_value(make_config):
    refused(make_config, "[uplink eth0]\nallowed-vlans 5\n",
            "config test.conf:2: 'allowed-vlans 5' is not 'key = value'")


def test_line_with_empty_key(make_config):
    refused(make_config, "[uplink eth0]\n= 5\n", "config test.conf:2: '= 5' is not 'key = value'")


def test_key_outside_any_section(make_config):
    refused(make_config, "# header comment\nallowed-vlans = 5\n[uplink eth0]\n",
            "config test.conf:2: allowed-vlans is outside any section; put it under [global] or "
            "[uplink NAME]")


def test_duplicate_key(make_config):
    refused(make_config, "[uplink eth0]\nallowed-vlans = 5\nwiring = access\nallowed-vlans = 7\n",
            "config test.conf:4: allowed-vlans is set twice in [uplink eth0] (first at line 2); "
            "keep one")


def test_uplink_listed_twice(make_config):
    refused(make_config, "[uplink eth0]\nallowed-vlans = 5\n\n[uplink eth0]\nallowed-vlans = 7\n",
            "config test.conf:4: [uplink eth0] is listed twice (first at line 1); merge the two "
            "sections")


def test_global_listed_twice(make_config):
    text = """\
[global]
default-uplink = eth1
[uplink eth0]
allowed-vlans = 5
[uplink eth1]
allowed-vlans = 5
[global]
lock-timeout = 5
"""
    with pytest.raises(InputError, match=r"^config test\.conf:7: \[global\] is listed twice "
                                         r"\(first at line 1\); merge the two sections$"):
        make_config(text)


def test_missing_allowed_vlans(make_config):
    refused(make_config, "[global]\nlock-timeout = 5\n[uplink eth0]\nwiring = access\n",
            "config test.conf:3: [uplink eth0] has no allowed-vlans; list the VLANs guests may "
            "use, e.g. allowed-vlans = 5,7,100-110")


@pytest.mark.parametrize("value, reason", [
    ("", "the VLAN list is empty (write e.g. 5,7,100-110)"),
    ("7-5", "range '7-5' is reversed (write 5-7)"),
    ("0", "VLAN 0 is the 802.1p priority tag, not a VLAN (use 1-4094)"),
    ("4095", "VLAN 4095 is reserved by 802.1Q (use 1-4094)"),
    ("5,", "'5,' has an empty item (write e.g. 5,7,100-110)"),
    ("five", "'five' is not a VLAN number (use 1-4094)"),
])
def test_bad_allowed_vlans(make_config, value, reason):
    refused(make_config, "[uplink eth0]\nallowed-vlans = %s\n" % value,
            "config test.conf:2: allowed-vlans in [uplink eth0]: " + reason)


def test_bad_host_vlans(make_config):
    refused(make_config, "[uplink eth0]\nwiring = trunk\nallowed-vlans = 5\nhost-vlans = 4096\n",
            "config test.conf:4: host-vlans in [uplink eth0]: VLAN 4096 is above 4094, the "
            "largest 802.1Q VLAN (use 1-4094)")


@pytest.mark.parametrize("value", ["bridge", "Trunk"])
def test_bad_wiring(make_config, value):
    refused(make_config, "[uplink eth0]\nallowed-vlans = 5\nwiring = %s\n" % value,
            "config test.conf:3: wiring = %s in [uplink eth0]; use wiring = access (VLAN devices "
            "on the NIC) or wiring = trunk (NIC in a trunk bridge)" % value)


def test_empty_wiring(make_config):
    # Messages are folded onto one line with single spaces (errors.VirtVlanError).
    refused(make_config, "[uplink eth0]\nallowed-vlans = 5\nwiring =\n",
            "config test.conf:3: wiring = in [uplink eth0]; use wiring = access (VLAN devices "
            "on the NIC) or wiring = trunk (NIC in a trunk bridge)")


def test_bad_keep_empty_bridges(make_config):
    refused(make_config, "[uplink eth0]\nallowed-vlans = 5\nkeep-empty-bridges = maybe\n",
            "config test.conf:3: keep-empty-bridges = maybe in [uplink eth0]; use yes or no")


def test_host_vlans_on_access_wiring(make_config):
    refused(make_config, "[uplink eth0]\nallowed-vlans = 5\nhost-vlans = 10\n",
            "config test.conf:3: host-vlans in [uplink eth0] applies to wiring = trunk only; on "
            "access wiring configure the host's VLAN devices in the host's network config")


def test_host_vlan_that_is_also_a_guest_vlan(make_config):
    # The host's VLAN device br0.5 would have to be the feed of br05, and a
    # bridge port's addresses stop working.
    refused(make_config, "[uplink eth1]\nwiring = trunk\nallowed-vlans = 5,7\nhost-vlans = 7,5\n",
            "config test.conf:4: VLAN 5 in [uplink eth1] is in both host-vlans and allowed-vlans; "
            "the host's VLAN device cannot also feed guests' bridge: remove it from one list "
            "(for a host address on a guest VLAN, put it on that VLAN's bridge and set "
            "keep-empty-bridges = yes)")


def test_default_uplink_naming_no_section(make_config):
    refused(make_config, "[global]\ndefault-uplink = eth9\n[uplink eth0]\nallowed-vlans = 5\n",
            "config test.conf:2: default-uplink = eth9 names no [uplink] section; use one of: "
            "eth0")


def test_default_uplink_with_no_uplinks_at_all(make_config):
    refused(make_config, "[global]\ndefault-uplink = eth0\n",
            "config test.conf:2: default-uplink = eth0 names no [uplink] section; use one of: "
            "none")


@pytest.mark.parametrize("value", ["abc", "0", "-1", "3601", "nan", "inf", "1e-9", "0.5"])
def test_bad_lock_timeout(make_config, value):
    refused(make_config, "[global]\nlock-timeout = %s\n" % value,
            "config test.conf:2: lock-timeout = %s is not a number of seconds in 1-3600; write "
            "e.g. lock-timeout = 30" % value)


def test_empty_lock_timeout(make_config):
    refused(make_config, "[global]\nlock-timeout =\n",
            "config test.conf:2: lock-timeout = is not a number of seconds in 1-3600; write "
            "e.g. lock-timeout = 30")


def test_every_refusal_is_one_line(make_config):
    error = refused(make_config, "[uplink eth0]\nallowed-vlans = 5\nwiring = both\n",
                    "config test.conf:3: wiring = both in [uplink eth0]; use wiring = access "
                    "(VLAN devices on the NIC) or wiring = trunk (NIC in a trunk bridge)")
    assert "\n" not in str(error)


# --- Config.uplink ------------------------------------------------------------


def test_uplink_lookup_by_name_and_default(mixed_config):
    assert mixed_config.uplink("eth1", "vm1").name == "eth1"
    assert mixed_config.uplink(None, "vm1").name == "eth0"


def test_unknown_uplink_names_the_asker_and_the_fix(mixed_config):
    with pytest.raises(InputError) as info:
        mixed_config.uplink("eth7", "domain vm1, interface 52:54:00:00:00:01")
    assert str(info.value) == ("domain vm1, interface 52:54:00:00:00:01: unknown uplink 'eth7'; "
                               "test.conf defines: eth0, eth1; use one of those or add "
                               "[uplink eth7]")


def test_no_uplink_in_config(make_config):
    conf = make_config("")
    with pytest.raises(InputError) as info:
        conf.uplink(None, "domain vm1, interface 52:54:00:00:00:01")
    assert str(info.value) == ("domain vm1, interface 52:54:00:00:00:01: no uplink given and "
                               "test.conf defines none; add an [uplink NAME] section")


# --- load ---------------------------------------------------------------------


def test_load_missing_file_returns_none(tmp_path):
    assert config.load(str(tmp_path / "virt-vlan.conf")) is None


def test_load_reads_path_from_environment(tmp_path, monkeypatch):
    path = tmp_path / "site.conf"
    path.write_text("[uplink eth0]\nallowed-vlans = 5\n")
    monkeypatch.setenv("VIRT_VLAN_CONFIG", str(path))
    conf = config.load()
    assert conf is not None
    assert conf.path == str(path)
    assert conf.uplinks[0].name == "eth0"


def test_load_explicit_path_wins_over_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("VIRT_VLAN_CONFIG", str(tmp_path / "missing.conf"))
    path = tmp_path / "real.conf"
    path.write_text("[uplink eth0]\nallowed-vlans = 5\n")
    conf = config.load(str(path))
    assert conf is not None and conf.path == str(path)


def test_load_errors_name_the_real_path(tmp_path):
    path = tmp_path / "virt-vlan.conf"
    path.write_text("[uplink eth0]\n")
    with pytest.raises(InputError, match=r"^config %s:1: \[uplink eth0\] has no allowed-vlans"
                                         % re.escape(str(path))):
        config.load(str(path))


def test_load_refuses_non_utf8(tmp_path):
    path = tmp_path / "virt-vlan.conf"
    path.write_bytes(b"[uplink eth0]\nallowed-vlans = 5 # \xff\n")
    with pytest.raises(InputError, match=r"^config %s: cannot read it: .*; fix its permissions "
                                         r"or encoding \(UTF-8 text\)$" % re.escape(str(path))):
        config.load(str(path))


def test_load_refuses_a_directory(tmp_path):
    with pytest.raises(InputError, match=r"cannot read it"):
        config.load(str(tmp_path))


def test_missing_config_error_message(monkeypatch):
    monkeypatch.delenv("VIRT_VLAN_CONFIG", raising=False)
    error = config.missing_config_error(None, "domain vm1, interface 52:54:00:00:00:01")
    assert isinstance(error, InputError)
    assert str(error) == ("domain vm1, interface 52:54:00:00:00:01 asks for VLANs but "
                          "/etc/virt-vlan/virt-vlan.conf does not exist; write it with at least "
                          "'[uplink eth0]' and 'allowed-vlans = 5,7' (see virt-vlan.conf(5))")


def test_missing_config_error_uses_environment_path(monkeypatch):
    monkeypatch.setenv("VIRT_VLAN_CONFIG", "/tmp/vv.conf")
    assert "but /tmp/vv.conf does not exist" in str(config.missing_config_error(None, "vm1"))


# --- describe -----------------------------------------------------------------


def test_describe(mixed_config):
    assert config.describe(mixed_config) == (
        "test.conf: 2 uplink(s), default eth0\n"
        "  eth0: device eth0, wiring access, VLANs 5,7; VLAN 5 -> bridge br05 fed by eth0.5\n"
        "  eth1: device eth1, wiring trunk, VLANs 5,7,100-110; VLAN 5 -> bridge br15 fed by br1.5")


def test_reconcile_interval_default_and_set(make_config):
    assert make_config("[uplink eth0]\nallowed-vlans = 5\n").reconcile_interval == 300.0
    conf = make_config("[global]\nreconcile-interval = 60\n[uplink eth0]\nallowed-vlans = 5\n")
    assert conf.reconcile_interval == 60.0


@pytest.mark.parametrize("value", ["abc", "9", "0", "-5", "86401", "nan", "inf"])
def test_bad_reconcile_interval(make_config, value):
    refused(make_config, "[global]\nreconcile-interval = %s\n" % value,
            "config test.conf:2: reconcile-interval = %s is not a number of seconds in 10-86400; "
            "write e.g. reconcile-interval = 300" % value)


# --- issue 19, item 9: what the messages say is what is checked -----------------------------

def test_name_too_long_in_bytes_says_bytes(make_config):
    # 9 characters, 17 bytes: IFNAMSIZ counts bytes, and so does the message.
    refused(make_config, "[uplink eth0]\nallowed-vlans = 5\naccess-bridge = %s{vlan}\n" % ("\u00fc" * 8),
            "config test.conf:3: access-bridge gives '%s5' for VLAN 5 in [uplink eth0]: 17 bytes, "
            "Linux allows 15; use a shorter template" % ("\u00fc" * 8))


@pytest.mark.parametrize("key", ["access-bridge", "access-feed"])
def test_nul_byte_in_a_template_is_refused(make_config, key):
    refused(make_config, "[uplink eth0]\nallowed-vlans = 5\n%s = br\0{vlan}\n" % key,
            "config test.conf:3: %s gives 'br\\x005' for VLAN 5 in [uplink eth0]: not a valid "
            "interface name (no '/', ':', spaces or NUL); fix the template" % key)
