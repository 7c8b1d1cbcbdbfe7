"""Python model of the multicast NoC: which PEs take a tag, and random stimulus.

A multicast controller (MC) takes a packet whose tag equals its ID or is the
all-ones broadcast tag; a PE takes a packet when its row MC and column MC both do.
Shared by the Amaranth-simulator tests, the cocotb testbench and the ID planner's tests.
"""

__all__ = ["mc_takes", "targets_of", "random_ids", "random_tag", "expected_deliveries"]


def mc_takes(tag, ident, bits):
    return tag == ident or tag == (1 << bits) - 1


def targets_of(tag, row_ids, col_ids, rb, cb):
    rows, cols = len(col_ids), len(col_ids[0])
    return {(r, c) for r in range(rows) for c in range(cols)
            if mc_takes(tag[0], row_ids[r], rb) and mc_takes(tag[1], col_ids[r][c], cb)}


def random_ids(rng, rows, cols, rb, cb):
    """IDs from small pools, so several X-buses and PEs share IDs (all ones included)."""
    row_pool = [rng.randrange(1 << rb) for _ in range(max(1, rows // 3))]
    col_pool = [rng.randrange(1 << cb) for _ in range(max(1, cols // 2))]
    row_ids = [rng.choice(row_pool) for _ in range(rows)]
    col_ids = [[rng.choice(col_pool) for _ in range(cols)] for _ in range(rows)]
    return row_ids, col_ids


def random_tag(rng, row_ids, col_ids, rb, cb):
    r, c = rng.randrange(len(row_ids)), rng.randrange(len(col_ids[0]))
    rt = row_ids[r] if rng.random() < 0.7 else rng.randrange(1 << rb)
    ct = col_ids[r][c] if rng.random() < 0.7 else rng.randrange(1 << cb)
    if rng.random() < 0.1:
        rt = (1 << rb) - 1
    if rng.random() < 0.1:
        ct = (1 << cb) - 1
    return rt, ct


def expected_deliveries(row_ids, col_ids, packets, rb, cb):
    rows, cols = len(row_ids), len(col_ids[0])
    out = {(r, c): [] for r in range(rows) for c in range(cols)}
    for d, rt, ct in packets:
        for pe in targets_of((rt, ct), row_ids, col_ids, rb, cb):
            out[pe].append(d)
    return out
