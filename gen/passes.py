"""GLB image, engine descriptors and tag tables of the passes of an `RSSchedule`.

The layout puts each tensor in the order its engine streams it, each region
starting on a word boundary, elements packed in power-of-two slots
(`ommatidia.hw.glb`):

- filters, per (filter group, channel group): ``[i][s][c][k]`` (row by row,
  each tap-major, as the PE loads them);
- padded ifmaps, per (image, channel group): ``[x][h][c]`` over the ifmap
  rows ``h`` the set reads (column-interleaved);
- psums, per (image, filter group): ``[e][f][k]``, where the GON receiver
  writes them; the psum sender reads them back in (f, e, k) order for the
  next channel group, in place (a psum is overwritten only after the PE
  that needs it has taken it).
"""

from __future__ import annotations

import numpy as np

from ommatidia.hw.engines import data_bits, tag_depth
from ommatidia.hw.glb import glb_words, slot_bits

__all__ = ["PassImage"]


def _words(n: int, per_word: int) -> int:
    return -(-n // per_word)


class PassImage:
    """GLB layout of a layer run as the passes of ``sched`` (an `RSSchedule`).

    Raises ValueError when the regions do not fit the GLB or a delivery list
    does not fit a tag table.
    """

    def __init__(self, sched):
        self.sched = sched
        cfg, layer = sched.cfg, sched.layer
        self.cfg = cfg
        bits = data_bits(cfg)
        self.slot = {k: slot_bits(b, cfg.dram_bits) for k, b in bits.items()}
        self.per_word = {k: cfg.dram_bits // s for k, s in self.slot.items()}
        self.rows = sched.ifmap_rows()
        R, S, E, F = layer.R, layer.S, layer.E, layer.F
        self.base = {}
        top = 0
        for ps in sched.passes:
            keys = {("filter", ps.m0, ps.c0): R * ps.p * ps.q * S,
                    ("ifmap", ps.n, ps.c0): sched.width * len(self.rows) * ps.q,
                    ("psum", ps.n, ps.m0): E * F * ps.p}
            for key, n in keys.items():
                if key not in self.base:
                    self.base[key] = top
                    top += _words(n, self.per_word[key[0]])
        self.words = top
        if top > glb_words(cfg):
            raise ValueError(f"the layer needs {top} GLB words, the GLB has {glb_words(cfg)}")
        outputs = sched.outputs()
        self.col0 = sched.pe_set.origin[1]
        if any(c - self.col0 != e for (_, c), e in outputs.items()):
            raise ValueError(f"output PEs {outputs} are not columns col0 + e")

    def _pack(self, kind: str, values) -> list[int]:
        slot, per = self.slot[kind], self.per_word[kind]
        mask = (1 << slot) - 1
        values = [int(v) & mask for v in values]
        return [sum(v << (slot * j) for j, v in enumerate(values[w * per:(w + 1) * per]))
                for w in range(_words(len(values), per))]

    def _inputs(self):
        """(kind, word base, values in stream order) of every filter and ifmap region."""
        sched = self.sched
        for (kind, a, b), base in self.base.items():
            if kind == "filter":
                ps = next(x for x in sched.passes if (x.m0, x.c0) == (a, b))
                w = sched.weights[a:a + ps.p, b:b + ps.q]
                yield kind, base, w.transpose(2, 3, 1, 0).reshape(-1)
            elif kind == "ifmap":
                ps = next(x for x in sched.passes if (x.n, x.c0) == (a, b))
                x = sched.padded[a, b:b + ps.q][:, self.rows, :]
                yield kind, base, x.transpose(2, 1, 0).reshape(-1)

    def image(self) -> dict[int, int]:
        """Word address -> word of the filters and ifmaps, before the first pass."""
        out = {}
        for kind, base, values in self._inputs():
            for k, word in enumerate(self._pack(kind, values)):
                out[base + k] = word
        return out

    def dram(self) -> tuple[dict[int, int], list[dict]]:
        """A DRAM image (word address -> word) and the `DMAIn` commands that load the GLB
        from it: filters raw, ifmap regions RLC-coded (`ommatidia.sim.rlc.encode`)."""
        from ommatidia.sim.rlc import encode
        words, cmds, top = {}, [], 0
        for kind, base, values in self._inputs():
            if kind == "ifmap":
                data, rlc = encode(values, self.cfg.rlc), 1
            else:
                data, rlc = self._pack(kind, values), 0
            words.update({top + k: w for k, w in enumerate(data)})
            cmds.append({"dram": top, "glb": base, "words": len(data), "n": len(values),
                         "rlc": rlc})
            top += len(data)
        return words, cmds

    def _tags(self, kind: str, keys, offset) -> list[tuple[int, int, int]]:
        tags = self.sched.plan.gin(kind).tags
        entries = [(rt, ct, offset(j)) for j, key in enumerate(keys)
                   for rt, ct in tags[(kind, 0, key)]]
        if len(entries) > tag_depth(self.cfg):
            raise ValueError(f"{kind} needs {len(entries)} tags, the table holds "
                             f"{tag_depth(self.cfg)}")
        return entries

    def program(self, ps) -> dict:
        """Descriptors (dicts of the `ommatidia.hw.engines` layouts) and tag tables of ``ps``."""
        layer, sched = self.layer, self.sched
        R, S, E, F, p, q = layer.R, layer.S, layer.E, layer.F, ps.p, ps.q
        fbase = self.base["filter", ps.m0, ps.c0] * self.per_word["filter"]
        ibase = self.base["ifmap", ps.n, ps.c0] * self.per_word["ifmap"]
        pbase = self.base["psum", ps.n, ps.m0] * self.per_word["psum"]
        ftags = self._tags("filter", range(R), lambda i: i * p * q * S)
        itags = self._tags("ifmap", self.rows, lambda j: j * q)
        ptags = self._tags("psum", range(E), lambda e: e * F * p)
        none = {"base": 0, "count": [0, 0, 0], "stride": [0, 0, 0], "repeat": 1, "tags": 1}

        def desc(base, count, stride, repeat, tags):
            return {"base": base, "count": count, "stride": stride, "repeat": repeat,
                    "tags": len(tags)}
        return {
            "filter": desc(fbase, [len(ftags), p * q * S, 1], [0, 1, 0], p * q * S, ftags)
            if ps.run.load_filter else none,
            "ifmap": desc(ibase, [sched.width, len(itags), q], [len(self.rows) * q, 0, 1], q,
                          itags),
            "psum": desc(pbase, [F, len(ptags), p], [p, 0, 1], p, ptags)
            if ps.run.accumulate else none,
            "gon": {"base": pbase, "col0": self.col0, "stride": F * p, "count": E * F * p},
            "tags": {"filter": ftags, "ifmap": itags, "psum": ptags},
            "run": ps.run.fields(self.cfg.pe),
        }

    @property
    def layer(self):
        return self.sched.layer

    def psum_words(self, n: int, m0: int, p: int) -> range:
        """Word addresses of the psum region of image ``n``, filter group ``m0``."""
        base = self.base["psum", n, m0]
        return range(base, base + _words(self.layer.E * self.layer.F * p, self.per_word["psum"]))

    def unpack_psums(self, n: int, m0: int, p: int, words: dict) -> np.ndarray:
        """Psums (p, E, F) of image ``n``, filter group ``m0`` from GLB ``words``."""
        slot, per, bits = self.slot["psum"], self.per_word["psum"], self.cfg.pe.psum_bits
        E, F = self.layer.E, self.layer.F
        values = []
        for a in self.psum_words(n, m0, p):
            values += [(words[a] >> (slot * j)) & ((1 << bits) - 1) for j in range(per)]
        values = np.array(values[:E * F * p], dtype=np.int64)
        values = np.where(values >= 1 << (bits - 1), values - (1 << bits), values)
        return values.reshape(E, F, p).transpose(2, 0, 1)
