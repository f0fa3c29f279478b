"""The one XML parser for documents from libvirt or its users, hardened.

Domain and network XML comes from whoever may define domains, so parsing
loads no DTD, resolves no entity, never touches the network, keeps
libxml2's depth and size limits (huge_tree off) and refuses documents over
MAX_XML_BYTES or with a DOCTYPE. lxml is imported on the first parse, not
with this module: the hook's untagged path must not load it.
"""

from virtvlan import NAMESPACE, PREFIX
from virtvlan.errors import InputError
from virtvlan.parse import xmlguard

# libvirt domain XML of a large guest is tens of KiB; 4 MiB leaves room and
# bounds what a hostile document can make us allocate.
MAX_XML_BYTES = 4 * 1024 * 1024

# Our namespace as lxml spells it in a tag ("{urn:virt-vlan:1}vlan"), and the
# prefix a tag is shown with in messages and written with (<vv:vlan>).
NS = "{%s}" % NAMESPACE
NSMAP = {PREFIX: NAMESPACE}


def shown(tag: str) -> str:
    """A tag as a message shows it: '{urn:virt-vlan:1}vlan' -> 'vv:vlan'."""
    return tag.replace(NS, PREFIX + ":")


def parse_xml(data: bytes, what: str, strip_blank: bool = False):  # type: ignore[no-untyped-def]
    """The root element of `data`, an lxml Element; comments and processing
    instructions dropped, and with `strip_blank` whitespace-only text
    between elements too (for documents we edit and write back).

    Raises InputError naming `what` ("domain XML") for a document that is
    too large, has a DOCTYPE, or is not well-formed.
    """
    from lxml import etree

    if len(data) > MAX_XML_BYTES:
        raise InputError("%s: XML is %d bytes, more than the %d accepted; this is not a "
                         "libvirt document" % (what, len(data), MAX_XML_BYTES))
    if xmlguard.declares(data) and xmlguard.declares(xmlguard.markup(data)):
        # Refused before libxml2 sees it: entity tricks (billion laughs, XXE)
        # get one fixed answer whatever libxml2's own limits are. The text
        # only in comments or CDATA (an application's own metadata) is harmless.
        raise InputError("%s: XML has a DOCTYPE; libvirt never writes one, remove it" % what)
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             dtd_validation=False, huge_tree=False, remove_comments=True,
                             remove_pis=True, remove_blank_text=strip_blank)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as err:
        raise InputError("%s: XML is not well-formed: %s; fix the document" % (what, err)) from err
    if root.getroottree().docinfo.doctype:
        raise InputError("%s: XML has a DOCTYPE; libvirt never writes one, remove it" % what)
    return root
