"""Multicast IDs and tags of gen/multicast.py, checked PE by PE against the mapping.

For every GIN and every PE, the multicast controllers are simulated here
(tag equal to the ID, or all ones) over all tags of all deliveries, and the
data items the PE would receive must be exactly those the row-stationary
mapping gives it, each once.
"""

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ommatidia.gen.config import EYERISS, SMALL, TINY, NoCConfig
from ommatidia.sim.noc_model import mc_takes as takes
from ommatidia.gen.multicast import (Delivery, GINIds, PESet, assign_ids, check_ids, plan_for,
                                     plan_multicast, rs_deliveries)


def rs_mapping(sets, rows, cols):
    """PE by PE: the filter row, ifmap row and psums the mapping sends it."""
    want = {kind: {(r, c): [] for r in range(rows) for c in range(cols)}
            for kind in ("filter", "ifmap", "psum")}
    for k, s in enumerate(sets):
        r0, c0 = s.origin
        for i in range(s.rows):
            for e in range(s.cols):
                pe = (r0 + i, c0 + e)
                want["filter"][pe].append(("filter", s.filters, s.first_row + i))
                want["ifmap"][pe].append(("ifmap", s.channels,
                                          (s.first_col + e) * s.stride + s.first_row + i))
                if i == s.rows - 1 and not s.psum_from_below:
                    want["psum"][pe].append(("psum", k, s.first_col + e))
    return want


def received(ids: GINIds, pe):
    """The keys ``pe`` takes, once per matching tag, by simulating its two MCs."""
    r, c = pe
    rb, cb = ids.row_id_bits, ids.col_id_bits
    assert 0 <= ids.row_ids[r] < (1 << rb) and 0 <= ids.col_ids[r][c] < (1 << cb)
    got = []
    for key, tags in ids.tags.items():
        for rt, ct in tags:
            assert 0 <= rt < (1 << rb) and 0 <= ct < (1 << cb)
            if takes(rt, ids.row_ids[r], rb) and takes(ct, ids.col_ids[r][c], cb):
                got.append(key)
    return sorted(got)


def check_plan(sets, rows, cols, noc):
    plan = plan_multicast(sets, rows, cols, noc)
    want = rs_mapping(sets, rows, cols)
    for kind in ("filter", "ifmap", "psum"):
        ids = plan.gin(kind)
        assert (ids.row_id_bits, ids.col_id_bits) == (noc.row_id_bits, noc.col_id_bits)
        for pe, keys in want[kind].items():
            assert received(ids, pe) == sorted(keys), f"{kind} GIN, PE {pe}"
    return plan


def conv1_pieces():
    """AlexNet CONV1 on Eyeriss: the 11x55 set strip-mined to 11x7, two pieces side by side."""
    return [PESet(11, 7, (0, 0), stride=4), PESet(11, 7, (0, 7), stride=4, first_col=7)]


def test_horizontal_filter_and_diagonal_ifmap_stride1():
    """One 3x4 set on the tiny array: filter row i to row i, ifmap row h to e + i = h."""
    plan = check_plan([PESet(3, 4)], TINY.rows, TINY.cols, TINY.noc)
    assert sorted(plan.filter.tags) == [("filter", 0, i) for i in range(3)]
    assert sorted(plan.ifmap.tags) == [("ifmap", 0, h) for h in range(6)]
    assert sorted(plan.psum.tags) == [("psum", 0, e) for e in range(4)]
    for ids in (plan.filter, plan.ifmap, plan.psum):
        assert all(len(tags) == 1 for tags in ids.tags.values())
    assert plan.filter.matches(plan.filter.tags["filter", 0, 1][0]) == {(1, c) for c in range(4)}
    assert plan.ifmap.matches(plan.ifmap.tags["ifmap", 0, 2][0]) == {(2, 0), (1, 1), (0, 2)}
    assert plan.psum.matches(plan.psum.tags["psum", 0, 3][0]) == {(2, 3)}
    assert plan.up == ((0, 0, 0, 0), (1, 1, 1, 1), (1, 1, 1, 1))
    assert plan.outputs == {(0, e): (0, e) for e in range(4)}


@pytest.mark.parametrize("stride", [2, 3, 4])
def test_diagonal_ifmap_stride(stride):
    """Stride U > 1: ifmap row h goes to the PEs with e*U + i = h and no other."""
    plan = check_plan([PESet(6, 7, stride=stride)], SMALL.rows, SMALL.cols, SMALL.noc)
    hit = plan.ifmap.matches
    for h in range(6 * stride + 6):
        pes = set().union(*(hit(t) for t in plan.ifmap.tags.get(("ifmap", 0, h), ())))
        assert pes == {(i, e) for i in range(6) for e in range(7) if e * stride + i == h}


def test_eyeriss_conv1_strip_mined():
    plan = check_plan(conv1_pieces(), EYERISS.rows, EYERISS.cols, EYERISS.noc)
    assert plan.ifmap.packets == len(plan.ifmap.tags) == 13 * 4 + 11
    assert len(plan.outputs) == 14


def test_eyeriss_conv2_stacked_pieces():
    """CONV2's 5x27 set as 5x14 and 5x13 pieces stacked: filter rows go to two X-buses."""
    sets = [PESet(5, 14, (0, 0)), PESet(5, 13, (5, 0), first_col=14)]
    plan = check_plan(sets, EYERISS.rows, EYERISS.cols, EYERISS.noc)
    assert plan.filter.matches(plan.filter.tags["filter", 0, 2][0]) == \
        {(2, c) for c in range(14)} | {(7, c) for c in range(13)}
    assert ("ifmap", 0, 15) in plan.ifmap.tags


def test_eyeriss_conv3_replicated():
    """CONV3's 3x13 set replicated 4 times on other filters and channels."""
    sets = [PESet(3, 13, (3 * k, 0), filters=k, channels=k) for k in range(4)]
    plan = check_plan(sets, EYERISS.rows, EYERISS.cols, EYERISS.noc)
    assert len(plan.filter.tags) == 12 and len(plan.ifmap.tags) == 60
    assert len(plan.psum.tags) == 52
    assert plan.filter.packets == 12 and plan.ifmap.packets == 60


def test_replicas_sharing_ifmaps():
    """Replicas on other filters but the same channels: one ifmap packet reaches all of them."""
    sets = [PESet(3, 13, (3 * k, 0), filters=k) for k in range(4)]
    plan = check_plan(sets, EYERISS.rows, EYERISS.cols, EYERISS.noc)
    assert len(plan.ifmap.tags) == 15
    for h in range(15):
        pes = set().union(*(plan.ifmap.matches(t) for t in plan.ifmap.tags["ifmap", 0, h]))
        assert len(pes) == 4 * sum(1 for i in range(3) if 0 <= h - i < 13)


def test_psum_chained_sets():
    """CONV4/5 style: the upper set takes psums from the top row of the set below."""
    sets = [PESet(3, 13, (0, 0), filters=0, channels=0, psum_from_below=True),
            PESet(3, 13, (3, 0), filters=1, channels=1)]
    plan = check_plan(sets, EYERISS.rows, EYERISS.cols, EYERISS.noc)
    assert sorted(plan.psum.tags) == [("psum", 1, e) for e in range(13)]
    assert plan.psum.matches(plan.psum.tags["psum", 1, 4][0]) == {(5, 4)}
    assert all(plan.up[r][c] == (1 <= r <= 5 and c < 13) for r in range(12) for c in range(14))
    assert plan.outputs == {(0, e): (0, e) for e in range(13)}


def test_broadcast():
    """Pointwise sets (R = 1) sharing one filter over the whole array: one broadcast packet."""
    sets = [PESet(1, 14, (r, 0), channels=r) for r in range(12)]
    plan = check_plan(sets, EYERISS.rows, EYERISS.cols, EYERISS.noc)
    assert plan.filter.tags == {("filter", 0, 0): ((15, 31),)}
    every = [Delivery(("bias",), frozenset((r, c) for r in range(3) for c in range(4))),
             Delivery(("one",), frozenset({(1, 1)}))]
    ids = assign_ids(every, 3, 4, 3, 3)
    assert ids.tags[("bias",)] == ((7, 7),)
    assert ids.matches(ids.tags[("one",)][0]) == {(1, 1)}


def test_split_when_tags_are_narrow():
    """With 2-bit column tags no two rows of a 3x3 set fit one band: split into several packets."""
    noc = NoCConfig(row_id_bits=2, col_id_bits=2)
    plan = check_plan([PESet(3, 3)], 3, 4, noc)
    assert [len(plan.ifmap.tags["ifmap", 0, h]) for h in range(5)] == [1, 2, 3, 2, 1]


def test_packed_ids():
    plan = plan_for(TINY, [PESet(3, 2, stride=2), PESet(3, 2, (0, 2), channels=1, filters=1)])
    row, col = plan.ifmap.packed()
    for r in range(3):
        assert (row >> (3 * r)) & 7 == plan.ifmap.row_ids[r]
        for c in range(4):
            assert (col >> (3 * (4 * r + c))) & 7 == plan.ifmap.col_ids[r][c]


@st.composite
def placements(draw):
    rows = draw(st.integers(1, 12))
    cols = draw(st.integers(1, 14))
    taken = set()
    sets = []
    for _ in range(draw(st.integers(1, 5))):
        R = draw(st.integers(1, rows))
        E = draw(st.integers(1, cols))
        r0 = draw(st.integers(0, rows - R))
        c0 = draw(st.integers(0, cols - E))
        pes = {(r0 + i, c0 + e) for i in range(R) for e in range(E)}
        if pes & taken:
            continue
        taken |= pes
        sets.append(PESet(R, E, (r0, c0), stride=draw(st.integers(1, 4)),
                          filters=draw(st.integers(0, 2)), channels=draw(st.integers(0, 2)),
                          first_row=draw(st.integers(0, 3)), first_col=draw(st.integers(0, 9))))
    return rows, cols, sets


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(placements(), st.integers(1, 4), st.integers(1, 5))
def test_random_placements(placement, rb, cb):
    """Random sets: with tags wide enough for every row and column the plan always exists;
    with narrow tags it either exists or is refused with an error naming a PE and a tag."""
    rows, cols, sets = placement
    roomy = (1 << rb) - 1 >= rows and (1 << cb) - 1 >= cols
    try:
        check_plan(sets, rows, cols, NoCConfig(row_id_bits=rb, col_id_bits=cb))
    except ValueError as exc:
        assert not roomy, f"refused although every row and column fits: {exc}"
        assert "PE (" in str(exc) and "tag (" in str(exc), str(exc)


def test_id_too_wide_for_column_tag():
    """Four filter groups side by side in one row need four column IDs; 2 bits hold three."""
    sets = [PESet(1, 1, (0, c), filters=c) for c in range(4)]
    with pytest.raises(ValueError, match=r"PE \(0, 3\) needs column ID 3 for tag \(0, 3\) of "
                                         r"filter row 0 of filter group 3.*col_id_bits = 2"):
        plan_multicast(sets, 3, 4, NoCConfig(row_id_bits=2, col_id_bits=2))


def test_id_too_wide_for_row_tag():
    sets = [PESet(1, 2, (r, 0), filters=r) for r in range(2)]
    with pytest.raises(ValueError, match=r"PE \(1, 0\) needs row ID 1 for tag \(1, 0\) of "
                                         r"filter row 0 of filter group 1.*row_id_bits = 1"):
        plan_multicast(sets, 2, 2, NoCConfig(row_id_bits=1, col_id_bits=1))


def test_check_rejects_wide_id():
    ids = plan_for(TINY, [PESet(3, 4)]).filter
    col_ids = [list(line) for line in ids.col_ids]
    col_ids[1][2] = 8
    bad = dataclasses.replace(ids, col_ids=tuple(map(tuple, col_ids)))
    with pytest.raises(ValueError, match=r"PE \(1, 2\): column ID 8 is wider than its 3-bit tag "
                                         r"field \(tag \(\d, \d\) of filter row 1 of filter "
                                         r"group 0\)"):
        check_ids(bad)


def test_check_rejects_unmatched_delivery():
    ids = plan_for(TINY, [PESet(3, 4)]).filter
    row_ids = list(ids.row_ids)
    tag = ids.tags["filter", 0, 0][0]
    row_ids[0] = 6
    assert tag[0] != 6
    bad = dataclasses.replace(ids, row_ids=tuple(row_ids))
    with pytest.raises(ValueError, match=rf"no PE matches tag \({tag[0]}, {tag[1]}\) of filter "
                                         r"row 0 of filter group 0; it is required at PE \(0, 0\)"):
        check_ids(bad)


def test_check_rejects_misdelivery_and_duplicate():
    ids = plan_for(TINY, [PESet(3, 4)]).ifmap
    t0, t1 = ids.tags["ifmap", 0, 0][0], ids.tags["ifmap", 0, 1][0]
    extra = dict(ids.tags)
    extra["ifmap", 0, 0] = (t0, t1)
    with pytest.raises(ValueError, match=r"PE \(\d, \d\) with IDs .* matches tag .* of ifmap row "
                                         r"0 of channel group 0 but is not one of its targets"):
        check_ids(dataclasses.replace(ids, tags=extra))
    twice = dict(ids.tags)
    twice["ifmap", 0, 0] = (t0, (7, t0[1]))
    with pytest.raises(ValueError, match=r"PE \(0, 0\) matches tags .* of ifmap row 0 of channel "
                                         r"group 0: it would receive it twice"):
        check_ids(dataclasses.replace(ids, tags=twice))


def test_delivery_outside_the_array():
    bad = [Delivery(("filter", 0, 0), frozenset({(3, 0)}))]
    with pytest.raises(ValueError, match=r"filter row 0 of filter group 0 is required at "
                                         r"PE \(3, 0\), outside the 3x4 array"):
        assign_ids(bad, 3, 4, 3, 3)


def test_bad_sets():
    with pytest.raises(ValueError, match=r"set 0 places its logical PE \(2, 0\) at PE \(3, 0\), "
                                         r"outside the 3x4 array"):
        rs_deliveries([PESet(3, 4, (1, 0))], 3, 4)
    with pytest.raises(ValueError, match=r"PE \(1, 1\) is in set 0 and in set 1"):
        rs_deliveries([PESet(2, 2), PESet(1, 1, (1, 1))], 3, 4)
    with pytest.raises(ValueError, match=r"PESet.stride must be at least 1, not 0"):
        PESet(3, 4, stride=0)
    with pytest.raises(ValueError, match=r"set 0 takes psums from below its bottom row, but "
                                         r"PE \(2, 0\) is not the top row of a set"):
        plan_multicast([PESet(2, 4, psum_from_below=True)], 4, 4, TINY.noc)
