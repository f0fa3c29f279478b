"""Every error is one bounded line: libvirt copies a hook's line into its
error and its log, so input quoted in it must not make it megabytes."""

import pytest

from test_metadata import domain_xml, entry, trunk
from virtvlan.errors import LINE_MAX, InputError, VirtVlanError, cut, one_line
from virtvlan.hook import handler as hook
from virtvlan.parse import config, metadata

BIG = 200_000


def test_error_line_is_capped_keeping_its_start_and_its_fix():
    message = "domain vm1: vlans=%s is wrong; write vlans='5,7'" % ("x" * 1_000_000)
    text = str(VirtVlanError(message))
    assert len(text) <= LINE_MAX and "\n" not in text
    assert text.startswith("domain vm1: vlans=xxx") and text.endswith("; write vlans='5,7'")
    assert " ... " in text


def test_short_error_line_is_unchanged_but_folded():
    assert str(InputError("a\nb  c")) == "a b c"
    assert one_line("x" * LINE_MAX) == "x" * LINE_MAX


def test_cut_marks_what_it_left_out():
    assert cut("abc", 5) == "abc"
    assert cut("abcdefgh", 5) == "ab..."


@pytest.mark.parametrize("xml", [
    domain_xml(trunk(vlans="5," + "x" * BIG)),
    domain_xml(trunk(vlans="," * BIG)),
    domain_xml(trunk(vlans="7-" + "5" * BIG)),
    domain_xml(entry(mac="5" * BIG, mode="access", vlan="5")),
    domain_xml(trunk(vlans="5", uplink="u" * BIG)),
], ids=["vlan word", "empty items", "range end", "raw mac", "uplink name"])
def test_hostile_values_give_a_short_line(make_config, xml):
    conf = make_config("[uplink eth0]\nallowed-vlans = 5,7\n")
    with pytest.raises(InputError) as caught:
        metadata.wants(metadata.parse_domain(xml), conf)
    text = str(caught.value)
    assert len(text) <= LINE_MAX and "\n" not in text
    assert text.startswith("domain vm1, interface "), text
    # The value itself is cut, not only the line: its start stays readable.
    assert text.count("..." ) >= 1 and len(text) < 300, text


def test_hook_refusal_on_stderr_is_one_short_line(tmp_path, monkeypatch):
    path = tmp_path / "vv.conf"
    path.write_text("[uplink eth0]\nallowed-vlans = 5\n")
    monkeypatch.setenv("VIRT_VLAN_CONFIG", str(path))
    code, err = hook.serve("qemu", ["vm1", "migrate", "begin", "-"],
                           domain_xml(trunk(vlans="5", uplink="u" * BIG)))
    assert code == 1 and err.startswith("virt-vlan: domain vm1, interface ")
    assert err.endswith("\n") and err.count("\n") == 1 and len(err) <= LINE_MAX + 12


def test_config_error_quoting_a_huge_line_is_short():
    with pytest.raises(InputError) as caught:
        config.parse("[uplink eth0]\nallowed-vlans = %s\n" % ("9" * BIG), "test.conf")
    assert len(str(caught.value)) < 300, str(caught.value)[:400]
