"""Bounded, derandomized fuzzing of what hostile or broken input reaches:
the metadata parser (domain definers), the config loader (a broken file),
the agent's request reader (root on its socket).

The property, for each: one VirtVlanError (a one-line refusal) or a clean
result, never another exception. Derandomized: the same examples on every
run, so a failure reproduces; sized to add a few seconds to the suite.
"""

import json
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from virtvlan.agent import serve
from virtvlan.errors import LINE_MAX, VirtVlanError
from virtvlan.parse import config, metadata

FUZZ = settings(derandomize=True, max_examples=300, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))


def _refused_or_clean(call, *args):  # type: ignore[no-untyped-def]
    try:
        return call(*args)
    except VirtVlanError as err:
        text = str(err)
        assert "\n" not in text and 0 < len(text) <= LINE_MAX, text[:200]
        return None


# --- the metadata parser ------------------------------------------------------------------

_WORDS = ["5", "7", "4094", "4095", "0", "1-10", "10-1", "5,7", ",", "-", " ", "\u00b9", "x",
          "2-4094", "52:54:00:00:00:01", "52:54:00:00:00:0g", "access", "trunk", "eth0", "",
          "&amp;", "&#10;", "<", "]]>", "urn:virt-vlan:1"]
_value = st.lists(st.sampled_from(_WORDS), max_size=6).map("".join)
_attr = st.tuples(st.sampled_from(["mac", "mode", "vlan", "vlans", "native", "uplink", "x"]),
                  _value)


def _element(tag: str, attrs) -> str:  # type: ignore[no-untyped-def]
    quoted = " ".join("%s='%s'" % (k, v.replace("'", "").replace("<", "").replace("&", ""))
                      for k, v in dict(attrs).items())
    return "<%s %s/>" % (tag, quoted)


_entry = st.tuples(st.sampled_from(["vv:interface", "vv:network", "vv:vlan", "interface",
                                    "vv:interfac"]),
                   st.lists(_attr, max_size=6)).map(lambda t: _element(*t))
_noise = st.sampled_from(["", "<!-- <!DOCTYPE x> -->", "<![CDATA[<!ENTITY]]>", "<?pi x?>",
                          "<!DOCTYPE d>", "<!ENTITY e 'x'>", "&e;", "<vv:vlan/>", "<",
                          "<description>urn:virt-vlan:1</description>"])


@st.composite
def documents(draw):  # type: ignore[no-untyped-def]
    entries = "".join(draw(st.lists(_entry, max_size=5)))
    nics = "".join("<interface type='bridge'><mac address='%s'/><target dev='t%d'/></interface>"
                   % (draw(st.sampled_from(["52:54:00:00:00:01", "52:54:00:00:00:02", "zz"])), i)
                   for i in range(draw(st.integers(0, 3))))
    root = draw(st.sampled_from(["domain", "network"]))
    body = ("<%s><name>n</name>%s<metadata><vv:vlan xmlns:vv='urn:virt-vlan:1'>%s</vv:vlan>"
            "</metadata><forward mode='bridge'/><bridge name='br05'/><devices>%s</devices></%s>"
            % (root, draw(_noise), entries, nics, root))
    text = draw(_noise) + body + draw(_noise)
    if draw(st.booleans()):  # cut or spliced: broken documents too
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(_noise) + text[at + draw(st.integers(0, 5)):]
    return text.encode("utf-8")


CONF = config.parse("[uplink eth0]\nallowed-vlans = 2-4094\nwiring = trunk\n", "t.conf")


@FUZZ
@given(documents())
def test_metadata_parser_refuses_in_one_line_or_parses(xml):
    conf = CONF
    domain = _refused_or_clean(metadata.parse_domain, xml)
    if domain is not None:
        _refused_or_clean(metadata.wants, domain, conf)
    network = _refused_or_clean(metadata.parse_network, xml)
    if network is not None and network.vlan is not None and network.bridge is not None:
        _refused_or_clean(metadata.network_want, network, conf)


@FUZZ
@given(st.binary(max_size=300))
def test_metadata_parser_on_raw_bytes(xml):
    _refused_or_clean(metadata.parse_domain, b"<domain xmlns:vv='urn:virt-vlan:1'>" + xml)
    _refused_or_clean(metadata.parse_network, xml)


# --- the config loader ----------------------------------------------------------------------

_KEYS = sorted(config.GLOBAL_KEYS | config.UPLINK_KEYS) + ["x", ""]
_CONF_VALUES = ["5", "5,7", "1-4094", "trunk", "access", "yes", "no", "1e-9", "nan", "30",
                "\u00b9\u2075\u2070\u2070", "1500", "{vlan}", "br{n}{vlan}", "{device}.{vlan}",
                "{x}", "{vlan:{x}}", "{", "}", "\0", "a/b", "a" * 20, "eth0", "", "#", ";",
                "\u00fc" * 8 + "{vlan}"]
_line = st.one_of(
    st.tuples(st.sampled_from(_KEYS), st.sampled_from(_CONF_VALUES)).map(
        lambda kv: "%s = %s" % kv),
    st.sampled_from(["[global]", "[uplink eth0]", "[uplink eth1]", "[uplink]", "[x", "= 5",
                     "# c", "key"]),
    st.text(max_size=20))


@FUZZ
@given(st.sampled_from(["", "[global]", "[uplink eth0]\nallowed-vlans = 5"]),
       st.lists(_line, max_size=12))
def test_config_loader_refuses_in_one_line_or_loads(head, lines):
    text = "\n".join([head] + lines)
    loaded = _refused_or_clean(config.parse, text, "t.conf")
    if loaded is not None:
        if loaded.uplinks:
            config.describe(loaded)
        for uplink in loaded.uplinks:
            for vlan in sorted(uplink.allowed_vlans)[:3]:
                uplink.access_bridge(vlan), uplink.feed(vlan)


# --- the agent's request reader ---------------------------------------------------------------

_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8))
_json = st.recursive(_json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=10)


@st.composite
def requests(draw):  # type: ignore[no-untyped-def]
    message = {"v": draw(st.sampled_from([1, 2, 3, True, "2", None])),
               "driver": draw(st.sampled_from(["qemu", "network", "lxc", 1])),
               "args": draw(st.one_of(st.lists(st.text(max_size=5), max_size=4), _json)),
               "xml": draw(st.one_of(st.text(max_size=20), _json)),
               "config": draw(st.one_of(st.none(), st.text(max_size=5), _json))}
    for key in draw(st.lists(st.sampled_from(sorted(message)), max_size=2)):
        message.pop(key, None)
    body = json.dumps(draw(st.one_of(st.just(message), _json))).encode("utf-8")
    body = draw(st.sampled_from([body, body[:-1], body + b"x", b"[" * 5000, b"\xff" + body]))
    size = draw(st.sampled_from([len(body), len(body) + 1, max(len(body) - 1, 0),
                                 serve.MAX_REQUEST + 1]))
    return struct.pack("!I", size) + body


@FUZZ
@given(requests(), st.lists(st.integers(1, 64), max_size=8))
def test_request_reader_refuses_in_one_line_or_reads(frame, cuts):
    framer = serve.Framer()
    at = 0
    for size in cuts + [len(frame)]:  # the frame as it may arrive: in pieces
        chunk, at = frame[at:at + size], at + size
        request = _refused_or_clean(framer.feed, chunk)
        if request is not None or at >= len(frame):
            break
    if request is not None:
        version, driver, args, xml, conf, received = request
        assert received is None or isinstance(received, float)
        assert version in serve.VERSIONS and driver in ("qemu", "network")
        assert isinstance(xml, bytes) and all(isinstance(a, str) for a in args)
        assert serve.encode_reply(version, 0, "x")


@FUZZ
@given(st.binary(max_size=200))
def test_request_reader_on_raw_bytes(data):
    _refused_or_clean(serve.Framer().feed, data)
