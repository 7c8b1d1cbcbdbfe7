"""The model's GLB read-port check (`ommatidia.gen.model.arbiters.agrees`) against the
round-robin grants it stands for (`round_robin`, the RTL's arbiter as the recurrences
replay it)."""

import random

from ommatidia.gen.model.arbiters import Gon, _next, agrees, round_robin


def _requests(rng, banked: bool):
    """Per sender its request cycles (in order) and banks: some senders idle, some banks
    read by one sender, some by two or three."""
    log, banks = [], []
    for _ in range(3):
        n = rng.choice([0, 1, 5, 30])
        t, reqs = 0, []
        for _ in range(n):
            t += rng.choice([0, 1, 1, 2, 5])
            reqs.append(t)
        log.append(reqs)
        banks.append([rng.randrange(3) if banked else 0 for _ in reqs])
    return log, banks


def _granted(log, last, banks):
    """``log`` with the grants `round_robin` makes."""
    plan = round_robin([[(t, None) for t in reqs] for reqs in log], last, banks)
    return [[plan[e, k] for k in range(len(reqs))] for e, reqs in enumerate(log)]


def test_agrees_is_the_round_robin_replay(seed):
    """The grants `round_robin` makes agree; a log with one grant moved (or one request
    moved, its grant kept) agrees exactly when every grant is still the replay's."""
    rng = random.Random(seed)
    seen = {True: 0, False: 0}
    for case in range(300):
        banked = case % 2 == 1
        reqs, banks = _requests(rng, banked)
        last = tuple(rng.choice([0, 1, 2, 4]) for _ in range(3)) if banked else \
            rng.choice([0, 1, 2, 4])
        bk = banks if banked else None
        log = _granted(reqs, last, bk)
        assert agrees(log, last, bk)
        if not any(log):
            continue
        e = rng.choice([i for i in range(3) if log[i]])
        k = rng.randrange(len(log[e]))
        t, g = log[e][k]
        log[e][k] = (t, g + rng.choice([-1, 1, 2])) if rng.random() < 0.5 else \
            (max(0, t + rng.choice([-2, -1, 1, 3])), g)
        plan = round_robin(log, last, bk)
        want = all(plan[i, n] == x for i in range(3) for n, x in enumerate(log[i]))
        assert agrees(log, last, bk) == want
        seen[want] += 1
    assert seen[True] and seen[False]


class _Top:
    def __init__(self, c: int):
        self.pe = type("PE", (), {"r": 0, "c": c})()


def test_the_x_bus_picks_alike_in_any_order(seed):
    """`arbiters._next` on the requests of a row in any order picks what `Gon._pick` picks
    from them in column order: the first column from the row's pointer on, else the
    first."""
    rng = random.Random(seed)
    for _ in range(500):
        cols = rng.randrange(1, 15)
        row = [_Top(c) for c in sorted(rng.sample(range(cols), rng.randrange(1, cols + 1)))]
        gon = Gon(1, cols, (rng.randrange(cols),), 0, 8)
        gon.fresh = set()
        want = gon._pick(0, row)
        shuffled = row[:]
        rng.shuffle(shuffled)
        assert _next(shuffled, gon.xptr[0]) is want
