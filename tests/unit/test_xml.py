"""parse/xml.py: the one hardened parser, used by metadata.py and cli/nics.py.
(metadata's tests cover the hostile documents through parse_domain.)"""

import subprocess
import sys

import pytest

from virtvlan import NAMESPACE, PREFIX
from virtvlan.cli import nics
from virtvlan.errors import InputError
from virtvlan.parse.xml import MAX_XML_BYTES, NS, NSMAP, parse_xml, shown


def test_parse_xml_drops_comments_and_processing_instructions():
    root = parse_xml(b"<domain><!-- note --><?pi x?><name>vm1</name></domain>", "domain XML")
    assert [child.tag for child in root] == ["name"]


def test_strip_blank_drops_whitespace_between_elements_only():
    xml = b"<domain>\n  <name> vm1 </name>\n</domain>"
    assert parse_xml(xml, "domain XML").text == "\n  "
    stripped = parse_xml(xml, "domain XML", strip_blank=True)
    assert stripped.text is None
    assert stripped.find("name").text == " vm1 "


@pytest.mark.parametrize("xml, message", [
    (b"<!DOCTYPE d><d/>", "interface XML: XML has a DOCTYPE; libvirt never writes one, remove it"),
    (b"<d>&x;</d>", "interface XML: XML is not well-formed: "),
    (b" " * (MAX_XML_BYTES + 1), "interface XML: XML is %d bytes, more than the %d accepted"
     % (MAX_XML_BYTES + 1, MAX_XML_BYTES)),
])
def test_refusals_name_what_was_parsed(xml, message):
    with pytest.raises(InputError) as err:
        parse_xml(xml, "interface XML")
    assert str(err.value).startswith(message)


def test_namespace_spellings_come_from_the_one_definition():
    assert NS == "{urn:virt-vlan:1}" == "{%s}" % NAMESPACE
    assert NSMAP == {PREFIX: NAMESPACE} == {"vv": "urn:virt-vlan:1"}
    assert shown(NS + "interface") == "vv:interface"
    assert shown("name") == "name"


def test_nics_reads_documents_through_the_hardened_parser():
    hostile = (b"<!DOCTYPE domain [<!ENTITY x SYSTEM 'file:///etc/passwd'>]>"
               b"<domain><devices><interface type='bridge'><mac address='&x;'/>"
               b"</interface></devices></domain>")
    with pytest.raises(InputError, match="^domain XML: XML has a DOCTYPE"):
        nics.interface_xml(hostile, "52:54:00:00:00:01")
    with pytest.raises(InputError, match="^interface XML: XML has a DOCTYPE"):
        nics.with_source_bridge(b"<!DOCTYPE i><interface type='bridge'/>", "br05")


def test_importing_the_helper_loads_no_lxml():
    code = ("import sys, virtvlan.parse.xml, virtvlan.parse.metadata\n"
            "print('lxml' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True,
                         timeout=60)
    assert out.stdout.decode().strip() == "False"
