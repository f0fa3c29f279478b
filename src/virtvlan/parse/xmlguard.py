"""What the XML guards do when they trip, without an XML parser.

metadata.py refuses a document that is too big or has a DOCTYPE/ENTITY
before libxml2 sees it. Such text also appears, harmlessly, in comments and
CDATA sections an application keeps in its own <metadata>, and an untagged
guest whose XML merely mentions our namespace (in a <description>, say) must
never be refused. So when a guard trips, these scans answer two questions
on the raw bytes, expanding nothing, in time linear in the document:
- is the DOCTYPE/ENTITY text real, or only inside comments and CDATA?
- can the document have virt-vlan elements at all?
"""

import re

from virtvlan import NAMESPACE

DECLARATIONS = (b"<!DOCTYPE", b"<!ENTITY")
# Text no markup is read in: comment, CDATA section, processing instruction.
_UNPARSED = re.compile(rb"<!--|<!\[CDATA\[|<\?")
_ENDS = {b"<!--": b"-->", b"<![CDATA[": b"]]>", b"<?": b"?>"}
# A namespace declaration (xmlns="..." or xmlns:p="..."), quoted either way.
_XMLNS = re.compile(rb"""\sxmlns(?::[^\s=<>]*)?\s*=\s*(?:"([^"<]*)"|'([^'<]*)')""")


def markup(xml: bytes) -> bytes:
    """`xml` without its comments, CDATA sections and processing
    instructions; an unterminated one runs to the end."""
    parts = []
    at = 0
    while True:
        found = _UNPARSED.search(xml, at)
        if found is None:
            parts.append(xml[at:])
            return b"".join(parts)
        parts.append(xml[at:found.start()])
        end = xml.find(_ENDS[found.group()], found.end())
        if end < 0:
            return b"".join(parts)
        at = end + len(_ENDS[found.group()])


def declares(text: bytes) -> bool:
    """Whether `text` (from markup()) has a DOCTYPE or ENTITY declaration."""
    return any(word in text for word in DECLARATIONS)


def may_be_tagged(text: bytes) -> bool:
    """Whether `text` (from markup()) can hold an element in the virt-vlan
    namespace: only a namespace declaration can put one there. A declaration
    built from an entity (xmlns:vv="&ns;") counts too: nothing is expanded."""
    for found in _XMLNS.finditer(text):
        value = found.group(1) if found.group(1) is not None else found.group(2)
        if NAMESPACE.encode() in value or b"&" in value:
            return True
    return False
