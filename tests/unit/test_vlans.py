"""vlans.py: one VLAN id, VLAN lists with ranges, and their shortest text."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from virtvlan.parse import vlans
from virtvlan.parse.vlans import (
    VLAN_MAX,
    VLAN_MIN,
    VlanSyntax,
    format_vlan_list,
    parse_vlan,
    parse_vlan_list,
)

# --- parse_vlan ---------------------------------------------------------------


@pytest.mark.parametrize("text, vid", [("1", 1), ("5", 5), ("4094", 4094), (" 7 ", 7), ("05", 5)])
def test_parse_vlan_accepts_1_to_4094(text, vid):
    assert parse_vlan(text) == vid


def test_parse_vlan_refuses_0_as_priority_tag():
    with pytest.raises(VlanSyntax, match=r"^VLAN 0 is the 802\.1p priority tag, not a VLAN "
                                         r"\(use 1-4094\)$"):
        parse_vlan("0")


def test_parse_vlan_refuses_4095_as_reserved():
    with pytest.raises(VlanSyntax, match=r"^VLAN 4095 is reserved by 802\.1Q \(use 1-4094\)$"):
        parse_vlan("4095")


@pytest.mark.parametrize("text", ["4096", "5000", "9999"])
def test_parse_vlan_refuses_above_4094(text):
    with pytest.raises(VlanSyntax, match=r"^VLAN %s is above 4094, the largest 802\.1Q VLAN"
                                         % text):
        parse_vlan(text)


# "\u0665" is ARABIC-INDIC DIGIT FIVE and "\u00b2" SUPERSCRIPT TWO: str.isdigit()
# accepts both, the kernel would not.
@pytest.mark.parametrize("text", ["x", "", " ", "-5", "+5", "5.0", "0x5", "5 6",
                                  "\u0665", "\u00b2"])
def test_parse_vlan_refuses_non_numbers(text):
    with pytest.raises(VlanSyntax, match=r"is not a VLAN number \(use 1-4094\)$"):
        parse_vlan(text)


def test_parse_vlan_error_quotes_the_input():
    with pytest.raises(VlanSyntax) as info:
        parse_vlan("x")
    assert str(info.value) == "'x' is not a VLAN number (use 1-4094)"


def test_parse_vlan_shortens_a_long_number_in_its_message():
    with pytest.raises(VlanSyntax) as info:
        parse_vlan("65536")
    assert str(info.value) == "VLAN 65536 is above 4094, the largest 802.1Q VLAN (use 1-4094)"


def test_parse_vlan_refuses_a_huge_number_without_converting_it():
    # 5000 digits: int() would hit CPython's int_max_str_digits (ValueError).
    with pytest.raises(VlanSyntax) as info:
        parse_vlan("1" * 5000)
    assert str(info.value) == ("VLAN 11111111... is above 4094, the largest 802.1Q VLAN "
                               "(use 1-4094)")


# --- parse_vlan_list ----------------------------------------------------------


@pytest.mark.parametrize("text, vids", [
    ("5", (5,)),
    ("5,7", (5, 7)),
    ("7,5", (5, 7)),
    ("5,5", (5,)),
    ("100-103", (100, 101, 102, 103)),
    ("5,7,100-102", (5, 7, 100, 101, 102)),
    (" 5 , 7 , 100 - 101 ", (5, 7, 100, 101)),
    ("9-9", (9,)),
    ("1-3,2-4", (1, 2, 3, 4)),
    ("4094", (4094,)),
])
def test_parse_vlan_list_sorts_and_deduplicates(text, vids):
    assert parse_vlan_list(text) == vids


@pytest.mark.parametrize("text", ["", "   "])
def test_parse_vlan_list_refuses_empty_list(text):
    with pytest.raises(VlanSyntax, match=r"^the VLAN list is empty \(write e\.g\. 5,7,100-110\)$"):
        parse_vlan_list(text)


@pytest.mark.parametrize("text", ["5,", ",5", "5,,7"])
def test_parse_vlan_list_refuses_empty_item(text):
    with pytest.raises(VlanSyntax, match=r"^%r has an empty item" % text):
        parse_vlan_list(text)


def test_parse_vlan_list_refuses_reversed_range_and_suggests_the_fix():
    with pytest.raises(VlanSyntax, match=r"^range '7-5' is reversed \(write 5-7\)$"):
        parse_vlan_list("7-5")


@pytest.mark.parametrize("text, item", [("-5", "-5"), ("5-", "5-"), ("5,-7", "-7")])
def test_parse_vlan_list_refuses_open_range(text, item):
    with pytest.raises(VlanSyntax, match=r"^range %r needs both ends" % item):
        parse_vlan_list(text)


@pytest.mark.parametrize("text, message", [
    ("0", "VLAN 0 is the 802.1p priority tag"),
    ("0-5", "VLAN 0 is the 802.1p priority tag"),
    ("4090-4095", "VLAN 4095 is reserved"),
    ("4096", "VLAN 4096 is above 4094"),
    ("5,x", "'x' is not a VLAN number"),
    ("1-2-3", "'2-3' is not a VLAN number"),
])
def test_parse_vlan_list_checks_every_member(text, message):
    with pytest.raises(VlanSyntax, match=message):
        parse_vlan_list(text)


# --- format_vlan_list ---------------------------------------------------------


@pytest.mark.parametrize("vids, text", [
    ((), ""),
    ((5,), "5"),
    ((5, 7), "5,7"),
    ((5, 6), "5-6"),
    ((5, 7, 8, 9), "5,7-9"),
    ((9, 8, 7, 5), "5,7-9"),
    ((1, 2, 3, 100, 4094), "1-3,100,4094"),
])
def test_format_vlan_list_is_shortest_form(vids, text):
    assert format_vlan_list(vids) == text


vlan_sets = st.frozensets(st.integers(VLAN_MIN, VLAN_MAX), min_size=1, max_size=60)


@given(vlan_sets)
def test_format_then_parse_round_trips(vids):
    assert parse_vlan_list(format_vlan_list(vids)) == tuple(sorted(vids))


@given(vlan_sets)
def test_formatted_list_has_no_adjacent_items_to_merge(vids):
    # Shortest form: no item ends right before the next one starts.
    items = format_vlan_list(vids).split(",")
    bounds = [tuple(int(x) for x in item.split("-")) for item in items]
    for before, after in zip(bounds, bounds[1:]):
        assert before[-1] + 1 < after[0]


@given(st.lists(st.integers(VLAN_MIN, VLAN_MAX), min_size=1, max_size=30))
def test_parse_of_any_comma_list_is_sorted_unique(vids):
    assert parse_vlan_list(",".join(map(str, vids))) == tuple(sorted(set(vids)))


# --- the work a hostile list can cost (issue 19, item 3) ---------------------------------

def test_list_of_more_items_than_vlans_is_refused():
    text = ",".join(["5"] * (vlans.MAX_ITEMS + 1))
    with pytest.raises(vlans.VlanSyntax, match="has 4095 items, more than the 4094 VLANs"):
        vlans.parse_vlan_list(text)
    assert vlans.parse_vlan_list(",".join(["5"] * vlans.MAX_ITEMS)) == (5,)


def test_overlapping_ranges_are_merged_before_any_vlan_is_listed(monkeypatch):
    # Counted through the ranges the parser builds: every VLAN once, however
    # many times the list repeats it (a repeated "2-4094" took minutes).
    listed = []
    real = range

    def counting(*args):  # type: ignore[no-untyped-def]
        made = real(*args)
        listed.append(len(made))
        return made
    monkeypatch.setattr(vlans, "range", counting, raising=False)
    assert vlans.parse_vlan_list(",".join(["2-4094"] * 4000 + ["1", "5-7"])) == tuple(
        real(1, 4095))
    assert sum(listed) == 4094


@pytest.mark.parametrize("spans, merged", [
    ([], []),
    ([(5, 5), (1, 3), (4, 4)], [(1, 5)]),
    ([(10, 20), (1, 2), (15, 30), (32, 33)], [(1, 2), (10, 30), (32, 33)]),
])
def test_merge_spans(spans, merged):
    assert vlans.merge_spans(spans) == merged
