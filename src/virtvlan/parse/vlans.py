"""VLAN id lists: "5", "5,7", "100-110", shared by the config and the XML."""

from typing import Iterable, List, Tuple

from virtvlan.errors import cut

# 802.1Q: 12-bit VID; 0 means "priority tag only" and 4095 is reserved, so a
# VLAN device can only carry 1..4094.
VLAN_MIN = 1
VLAN_MAX = 4094


class VlanSyntax(ValueError):
    """Why a VLAN value is wrong; callers add where it was found."""


def parse_vlan(text: str) -> int:
    """One VLAN id, 1..4094, decimal digits only."""
    word = text.strip()
    if not word.isdigit() or not word.isascii():
        raise VlanSyntax("%s is not a VLAN number (use 1-4094)" % cut(repr(text)))
    if len(word) > 4:
        # Also keeps int() away from CPython's digit limit on hostile input.
        raise VlanSyntax("VLAN %s is above 4094, the largest 802.1Q VLAN (use 1-4094)"
                         % (word if len(word) <= 8 else word[:8] + "..."))
    vid = int(word)
    if vid == 0:
        raise VlanSyntax("VLAN 0 is the 802.1p priority tag, not a VLAN (use 1-4094)")
    if vid == 4095:
        raise VlanSyntax("VLAN 4095 is reserved by 802.1Q (use 1-4094)")
    if vid > VLAN_MAX:
        raise VlanSyntax("VLAN %d is above 4094, the largest 802.1Q VLAN (use 1-4094)" % vid)
    return vid


# Items of one list: more than there are VLANs is no list a human wrote, and
# this bounds the work a hostile list costs (each item is parsed once; the
# ranges are merged once and expanded once into at most 4094 VLANs).
MAX_ITEMS = VLAN_MAX


def parse_vlan_list(text: str) -> Tuple[int, ...]:
    """A comma-separated list of VLANs and inclusive ranges, sorted, unique.

    Linear in the text: at most MAX_ITEMS items, and the ranges are merged
    before any VLAN is listed, so overlapping ranges cost nothing extra.
    """
    if not text.strip():
        raise VlanSyntax("the VLAN list is empty (write e.g. 5,7,100-110)")
    items = text.count(",") + 1
    if items > MAX_ITEMS:
        raise VlanSyntax("the VLAN list has %d items, more than the %d VLANs there are; "
                         "write ranges (e.g. 100-110)" % (items, MAX_ITEMS))
    spans = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise VlanSyntax("%s has an empty item (write e.g. 5,7,100-110)" % cut(repr(text)))
        if "-" in item:
            low_text, _, high_text = item.partition("-")
            if not low_text.strip() or not high_text.strip():
                raise VlanSyntax("range %s needs both ends (write e.g. 100-110)" % cut(repr(item)))
            low, high = parse_vlan(low_text), parse_vlan(high_text)
            if low > high:
                raise VlanSyntax("range %s is reversed (write %d-%d)" % (cut(repr(item)), high, low))
            spans.append((low, high))
        else:
            vid = parse_vlan(item)
            spans.append((vid, vid))
    return tuple(vid for low, high in merge_spans(spans) for vid in range(low, high + 1))


def merge_spans(spans: Iterable[Tuple[int, int]]) -> List[Tuple[int, int]]:
    """Inclusive (low, high) spans, overlapping or adjacent ones merged, sorted."""
    merged: List[Tuple[int, int]] = []
    for low, high in sorted(spans):
        if merged and low <= merged[-1][1] + 1:
            if high > merged[-1][1]:
                merged[-1] = (merged[-1][0], high)
        else:
            merged.append((low, high))
    return merged


def format_vlan_list(vids: Iterable[int]) -> str:
    """The shortest list text for `vids`: (5, 7, 8, 9) -> "5,7-9"."""
    out = []
    ordered = sorted(vids)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else "%d-%d" % (ordered[i], ordered[j]))
        i = j + 1
    return ",".join(out)
