"""The accelerator's architectural state as a program changes it: registers, tag
tables, bias, the GLB's contents and the DRAM; the cycles of ``DMA_IN``,
``DMA_OUT`` and ``PASS`` commands, and the counters and accesses they add.

A ``PASS`` is timed by `ommatidia.gen.model.timing` (or, where the recurrences
cannot order it, by `ommatidia.gen.model.reference`) once per distinct pass in a
process (`ommatidia.gen.model.memo`) and, with ``values``, run on
the data: filters, ifmaps and psums routed by the tag tables and IDs, psums
into the GLB.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ommatidia.gen.arith import int_matmul, saturate, wrap
from ommatidia.gen.packing import pack_slots
from ommatidia.gen.rlc import encode_runs, pack_runs

from .arbiters import glb_bank, read_ports, reset_state
from .decode import KINDS, unpacker
from .dram import SYSTEM_DRAM, DramTiming, Writes
from .memo import PASS_MEMO, arbiter_key, carry_state
from .pe import Schedule
from .reference import reference_pass
from .rlc import rlc_decode, rlc_out_times, rlc_steps
from .timing import PassTime, Unordered, pass_timing, pe_grid

__all__ = ["Machine"]

PASS_REGISTERS = ("filter_desc", "ifmap_desc", "psum_desc", "gon_desc", "run", "enable", "up",
                  "filter_row_id", "filter_col_id", "ifmap_row_id", "ifmap_col_id",
                  "psum_row_id", "psum_col_id")
"""The registers a ``PASS`` reads (`ommatidia.hw.top.REGISTERS` but the DMA commands)."""


class Machine:
    """The accelerator's architectural state as the program changes it."""

    def __init__(self, cfg, words: dict, values: bool, reference: bool = False,
                 dram: DramTiming = SYSTEM_DRAM):
        from ommatidia.hw.engines import data_bits, gin_values, tag_depth
        from ommatidia.hw.glb import elem_addr_bits, filter_glb_word, filter_glb_words, \
            glb_words, slot_bits, word_addr_bits
        from ommatidia.hw.top import REGISTERS, register_shapes
        self.cfg, self.values, self.reference = cfg, values, reference
        self.dram_timing = dram
        self.writes = Writes(dram) if dram.bus == "axi" else None
        self.last_times = None
        self.dram = dict(words)
        shapes = register_shapes(cfg)
        self.unpack = {name: unpacker(shapes[name]) for name in REGISTERS}
        self.regs = {name: self.unpack[name](0) for name in REGISTERS}
        self.raw = {name: 0 for name in REGISTERS}
        self.tags = [dict() for _ in KINDS]
        self.tag_keys = [() for _ in KINDS]  # per table its entries as `_walk` keys them
        self.bias = [0] * cfg.pe.psum_spad_depth
        self.bits = data_bits(cfg)
        self.gin_values = gin_values(cfg)
        self.slot = {k: slot_bits(b, cfg.dram_bits) for k, b in self.bits.items()}
        self.per = {k: cfg.dram_bits // s for k, s in self.slot.items()}
        self.abits = elem_addr_bits(cfg)
        self.word_mask = (1 << word_addr_bits(cfg)) - 1
        self.tag_depth = tag_depth(cfg)
        self.glb = np.zeros(glb_words(cfg) + filter_glb_words(cfg), dtype=np.uint64)
        self.fglb = (glb_words(cfg), filter_glb_words(cfg))  # the filter GLB's words
        self.fwide = filter_glb_word(cfg)  # GLB words in a filter GLB word
        self.filters = ((), np.zeros((0, 0), dtype=np.int64))
        self.filter_rows = {}
        self.rr = reset_state(cfg)
        self.targets_cache = {}
        self.route_cache = {}
        self.grid_cache = {}
        self.chain_cache = {}
        self.shape_cache = {}
        self.walk_cache = {}
        self.slot_plans = {}    # (kind, GLB word, elements) -> `_slot_plan` of a DMA_IN
        self.rlc_cache = {}     # (DRAM word, words, values) -> an RLC DMA_IN's stream decoded
        self.count = {k: 0 for k in ("macs", "mac_cycles", "gated_macs", "pe_stall_cycles",
                                     "noc_stall_cycles", "glb_reads", "glb_writes",
                                     "dram_words_read", "dram_words_written", "program_words")}
        self.acc = {"glb": 0, "noc": 0, "spad": 0}
        self.exact = True
        self.fallbacks = 0

    # -- GLB elements

    def _read(self, kind: str, addr: np.ndarray, at=None) -> np.ndarray:
        """Elements ``addr`` of ``kind``'s slots, sign-extended from the element width;
        ``at``: their words and slot shifts (`_slots`), if known."""
        slot = self.slot[kind]
        word, shift = self._slots(kind, addr) if at is None else at
        raw = ((self.glb[word] >> shift) & np.uint64((1 << slot) - 1)).astype(np.int64)
        return wrap(raw, self.bits[kind])

    def _slots(self, kind: str, addr: np.ndarray) -> tuple:
        """The GLB words of elements ``addr`` of ``kind`` and their slots' shifts."""
        per, slot = self.per[kind], self.slot[kind]
        return (addr // per) % len(self.glb), ((addr % per) * slot).astype(np.uint64)

    def _write_slots(self, kind: str, addr: np.ndarray, values) -> None:
        """Masked writes of ``values`` into elements ``addr`` of ``kind``'s slots."""
        self._write_planned(kind, self._slot_plan(kind, addr), values)

    def _slot_plan(self, kind: str, addr: np.ndarray) -> tuple:
        """What `_write_planned` needs of elements ``addr`` of ``kind`` (fixed by the
        addresses: passes and ``DMA_IN``\\ s that write the same elements reuse it): the
        order writing them by word, their slots' shifts in that order, where each word's
        run starts, the words, and per word the bits its slots keep."""
        per, slot = self.per[kind], self.slot[kind]
        mask = np.uint64((1 << slot) - 1)
        words = (addr // per) % len(self.glb)
        shift = ((addr % per) * slot).astype(np.uint64)
        order = None
        if len(words) > 1 and not (words[1:] >= words[:-1]).all():
            order = np.argsort(words, kind="stable")
            words, shift = words[order], shift[order]
        if not len(words):
            return order, shift, None, None, None
        starts = np.flatnonzero(np.r_[True, words[1:] != words[:-1]])
        return order, shift, starts, words[starts], ~np.bitwise_or.reduceat(mask << shift, starts)

    def _write_planned(self, kind: str, plan: tuple, values) -> None:
        """Masked writes of ``values`` into the elements of `_slot_plan` ``plan``: per word,
        every slot written cleared, then the values or-ed in."""
        order, shift, starts, w, keep = plan
        if starts is None:
            return
        mask = np.uint64((1 << self.slot[kind]) - 1)
        v = np.asarray(values, dtype=np.int64)
        if order is not None:
            v = v[order]
        v = (v.astype(np.uint64) & mask) << shift
        self.glb[w] = (self.glb[w] & keep) | np.bitwise_or.reduceat(v, starts)

    # -- commands

    def set(self, name: str, value: int) -> None:
        self.raw[name] = value
        self.regs[name] = self.unpack[name](value)

    def tag(self, engine: int, index: int, entry: dict) -> None:
        """A ``TAG`` write of ``entry`` at ``index`` of sender ``engine``'s tag table."""
        self.tags[engine][index] = entry
        self.tag_keys[engine] = None

    def dma_in(self, start: int = 0) -> int:
        """The cycles of the ``DMA_IN`` in the registers, its first request at ``start``
        (after the write bursts of `writes` on the AXI top)."""
        cycles, steps, term, tail = self._dma_in()
        if self.dram_timing.is_system or not steps:
            return cycles
        after = self.writes.read_at(start) if self.writes is not None else None
        return cycles + self._read_extra(self.regs["dma_in"]["dram"], steps, term, tail,
                                         None if after is None else after - start)

    def _read_extra(self, addr: int, steps: list, term: int, tail: int, after) -> int:
        """Cycles a ``DMA_IN`` of words ``addr ..`` takes more on this DRAM than on the
        System's: each word is taken when it has come and ``steps`` cycles after the one
        before (a decoded word's cycles, `rlc_steps`; 1 for a raw or drained word); the
        command ends ``tail`` cycles after word ``term`` is taken (its pairs) or with its
        last word; no read burst goes out before ``after`` (write bursts)."""
        def finish(timing, after=None):
            c = timing.taken(addr, steps, not_before=after)
            return max(c[term] + tail, c[-1])
        return finish(self.dram_timing, after) - finish(SYSTEM_DRAM)

    def _dma_in(self) -> tuple:
        """The System's cycles of a ``DMA_IN`` and what `_read_extra` needs."""
        cmd, cfg = self.regs["dma_in"], self.cfg
        nwords = cmd["words"]
        self.count["dram_words_read"] += nwords
        if cmd["rlc"] and cfg.rlc_codec:
            n, per = cmd["n"], self.per["ifmap"]
            fmt = cfg.rlc
            key = (cmd["dram"], nwords, n)
            got = self.rlc_cache.get(key)
            if got is None:
                get, dram = self.dram.get, cmd["dram"]
                stream = [get(dram + k, 0) for k in range(nwords)]
                end = next((k for k, w in enumerate(stream) if w >> (fmt.word_bits - 1)),
                           nwords - 1)
                vals = wrap(rlc_decode(stream[:end + 1], n, fmt), cfg.pe.act_bits) \
                    if self.values and n else None
                steps = rlc_steps(stream[:end + 1], n, fmt, per,
                                  cfg.rlc_decode_words).tolist() if nwords else None
                got = self.rlc_cache[key] = (end, vals, steps)
            end, vals, steps = got
            if vals is not None:
                at = ("ifmap", cmd["glb"], n)
                plan = self.slot_plans.get(at)
                if plan is None:
                    plan = self.slot_plans[at] = self._slot_plan(
                        "ifmap", cmd["glb"] * per + np.arange(n))
                self._write_planned("ifmap", plan, vals)
            self.count["glb_writes"] += -(-n // per)
            self.acc["glb"] += n
            if not nwords:
                return 4, [], 0, 0
            cycles = sum(steps) + 4
            drained = nwords > end + 1
            if not drained and self.dram_timing.is_system:
                return 3 + cycles, [], 0, 0
            before = sum(steps[:end])
            if drained:
                cycles = max(cycles, before + nwords - end - 1 + 3)
            return 3 + cycles, steps[:end] + [1] * (nwords - end), end, steps[end] + 1
        if self.values and nwords:
            get, dram = self.dram.get, cmd["dram"]
            if nwords <= len(self.glb):
                try:
                    data = np.fromiter(map(get, range(dram, dram + nwords)), np.uint64, nwords)
                except TypeError:   # words outside the image read 0
                    data = np.array([get(dram + k, 0) for k in range(nwords)], dtype=np.uint64)
                self.glb[(cmd["glb"] + np.arange(nwords)) % len(self.glb)] = data
            else:  # the GLB wraps: later words overwrite earlier ones
                for k in range(nwords):
                    self.glb[(cmd["glb"] + k) % len(self.glb)] = get(dram + k, 0)
        self.count["glb_writes"] += nwords
        self.acc["glb"] += cmd["n"] if cmd["n"] else nwords
        return 3 + (nwords + 3 if nwords else 1), [1] * nwords, nwords - 1, 0

    def dma_out(self, start: int = 0) -> int:
        """The cycles of the ``DMA_OUT`` in the registers, run at ``start``; on the AXI top
        its words join `writes`, written as the System writes them."""
        written = self.count["dram_words_written"]
        cycles = self._dma_out()
        if self.writes is None:
            return cycles
        cmd = self.regs["dma_out"]
        words = self.count["dram_words_written"] - written
        last = start + cycles - 4
        self.writes.add(cmd["dram"], [last + t for t in self._write_times(cmd, words, cycles)])
        return cycles

    def _write_times(self, cmd, words: int, cycles: int) -> list[int]:
        """When a ``DMA_OUT`` writes its words, counted from its last write (0): raw words
        one a cycle; RLC words as the encoder sends them (`rlc_out_times`: values go in
        ``dma_out_values`` a cycle); without the values, evenly spread."""
        if not cmd["rlc"]:
            return [-(words - 1 - k) for k in range(words)]
        times = self.last_times
        if times is None:
            space = max(1, (cycles - 5) // max(words, 1))
            return [-space * (words - 1 - k) for k in range(words)]
        return (times - times[-1]).tolist()

    def _dma_out_reads(self, glb: int, words: int) -> None:
        """The GLB read port's state after the `DMAOut` read ``words`` words from
        ``glb``: it granted the `DMAOut` (4) last; with `ArrayConfig.glb_bank_reads`,
        in each bank it read."""
        if not self.cfg.glb_bank_reads:
            self.rr = (4,) + self.rr[1:]
            return
        read = set(glb_bank(self.cfg, (glb + np.arange(words)) & self.word_mask).tolist())
        self.rr = (tuple(4 if b in read else x for b, x in enumerate(self.rr[0])),) \
            + self.rr[1:]

    def _written(self, addr: int, words: int) -> None:
        """DRAM words ``addr .. addr + words - 1`` were written: the RLC streams read
        from them are decoded afresh."""
        stale = [k for k in self.rlc_cache if k[0] < addr + words and addr < k[0] + k[1]]
        for k in stale:
            del self.rlc_cache[k]

    def _dma_out(self) -> int:
        """The System's cycles of a ``DMA_OUT``."""
        cmd, cfg = self.regs["dma_out"], self.cfg
        n, per = cmd["n"], self.per["psum"]
        self._dma_out_reads(cmd["glb"], n if not cmd["rlc"] else -(-n // per))
        if not cmd["rlc"]:
            self.count["glb_reads"] += n
            self.count["dram_words_written"] += n
            self.acc["glb"] += n * per
            if self.values:
                for k in range(n):
                    self.dram[cmd["dram"] + k] = int(self.glb[(cmd["glb"] + k) % len(self.glb)])
                self._written(cmd["dram"], n)
            return 3 + n + 4 if n else 4
        words = -(-n // per)
        self.count["glb_reads"] += words
        self.acc["glb"] += n
        self.last_times = None
        pairs = None
        if self.values:
            st = cmd["stage"]
            x = self._read("psum", cmd["glb"] * per + np.arange(n))
            b = np.array(self.bias[:max(st["p"], 1)], dtype=np.int64)
            y = wrap(x + b[np.arange(n) % len(b)], cfg.pe.psum_bits)
            if st["relu"]:
                y = np.maximum(y, 0)
            if st["shift"]:
                y = (y + (1 << (st["shift"] - 1))) >> st["shift"]
            z = saturate(y, cfg.pe.act_bits)
            if cfg.rlc_codec:
                pairs = encode_runs(z, cfg.rlc)
                coded = pack_runs(*pairs, cfg.rlc)
            else:
                coded = pack_slots(cfg, "ifmap", z)
            for k, w in enumerate(coded):
                self.dram[cmd["dram"] + k] = w
            self._written(cmd["dram"], len(coded))
            self.count["dram_words_written"] += len(coded)
        else:
            self.exact = False
            self.count["dram_words_written"] += (
                (-(-n // cfg.rlc.pairs_per_word) if n else 1) if cfg.rlc_codec
                else -(-n // self.per["ifmap"]))
        if not n:
            return 3 + 6 if cfg.rlc_codec else 4
        if not cfg.rlc_codec:
            return 3 + n + 4
        times = rlc_out_times(cfg.rlc, n, cfg.dma_out_values,
                              runs=None if pairs is None else pairs[0])
        if pairs is not None:
            self.last_times = times
        return 3 + int(times[-1]) + 6

    def _targets(self, kind: str, entry) -> tuple:
        """The PEs whose multicast controllers take a packet tagged like ``entry``."""
        ids = (self.raw[f"{kind}_row_id"], self.raw[f"{kind}_col_id"])
        cache = self.targets_cache.get(kind)
        if cache is None or cache[0] != ids[0] or cache[1] != ids[1]:
            cache = self.targets_cache[kind] = (ids[0], ids[1], {})
        key = (entry["row"], entry["col"])
        got = cache[2].get(key)
        if got is None:
            noc = self.cfg.noc
            rb, cb = (1 << noc.row_id_bits) - 1, (1 << noc.col_id_bits) - 1
            rid, cid = self.regs[f"{kind}_row_id"], self.regs[f"{kind}_col_id"]
            got = tuple((r, c) for r in range(self.cfg.rows)
                        if key[0] in (rid[r], rb)
                        for c in range(self.cfg.cols) if key[1] in (cid[r][c], cb))
            cache[2][key] = got
        return got

    def _shape(self, desc) -> dict:
        """The part of a sender's stream fixed by its loop counts, strides and tag
        cycling (cached): the address pattern, the tag index of each packet, the tags
        used, and a key naming them."""
        key = (tuple(desc["count"]), tuple(desc["stride"]), desc["repeat"], desc["tags"])
        got = self.shape_cache.get(key)
        if got is None:
            c0, c1, c2 = desc["count"]
            s0, s1, s2 = desc["stride"]
            n = c0 * c1 * c2
            i = np.arange(n, dtype=np.int64)
            tag = (i // max(desc["repeat"], 1)) % max(desc["tags"], 1)
            got = {"n": n, "key": key, "tag": tag, "tags": tag.tolist(),
                   "pattern": (i // max(c1 * c2, 1)) * s0 + ((i // max(c2, 1)) % max(c1, 1)) * s1
                   + (i % max(c2, 1)) * s2,
                   "used": sorted(set(tag.tolist()))}
            self.shape_cache[key] = got
        return got

    def _streams(self) -> dict:
        """Per sender: element addresses (``addr``, ``route``), its packets' GLB words,
        word misses, tag indices and values (``n``, None for one each), and the PEs each
        tag index reaches."""
        out = {}
        amask = (1 << self.abits) - 1
        blank = {"row": 0, "col": 0, "offset": 0}
        for e, kind in enumerate(KINDS):
            desc, table = self.regs[f"{kind}_desc"], self.tags[e]
            shape = self._shape(desc)
            entries = [table.get(t, blank) for t in range(max(desc["tags"], 1))]
            off = np.array([x["offset"] for x in entries], dtype=np.int64)
            addr = (desc["base"] + shape["pattern"] + off[shape["tag"]]) & amask
            word = addr // self.per[kind]
            if kind == "filter" and self.fwide > 1:
                fw = word >= self.fglb[0]
                word = word - np.where(fw, (word - self.fglb[0]) % self.fwide, 0)
            tag, values = shape["tags"], None
            if self.gin_values[kind] > 1 and desc["stride"][2] == 1 and shape["n"]:
                start = self._packets(word, desc, self.gin_values[kind])
                values = np.diff(np.append(start, shape["n"]))
                word, tag = word[start], shape["tag"][start].tolist()
            miss = np.ones(len(word), dtype=bool)
            if len(word):
                miss[1:] = word[1:] != word[:-1]
            targets = {t: self._targets(kind, entries[t]) for t in shape["used"]}
            key = (kind, shape["key"], tuple(targets.items()))
            out[kind] = {"addr": addr, "word": word, "miss": miss, "tag": tag, "n": values,
                         "targets": targets, "shape": shape["key"],
                         "route": self._route(key, shape["tag"], targets)}
            if self.cfg.glb_bank_reads:
                out[kind]["bank"] = glb_bank(self.cfg, word)
        return out

    @staticmethod
    def _packets(word: np.ndarray, desc, values: int) -> np.ndarray:
        """The first element of each packet of a sender packing up to ``values``
        elements (`ommatidia.hw.engines.SendEngine`): an element joins the one before
        in the innermost loop, the tag's run of ``repeat`` and the GLB word; runs of
        joined elements go out ``values`` at a time."""
        i = np.arange(len(word), dtype=np.int64)
        join = np.zeros(len(word), dtype=bool)
        repeat = desc["repeat"]
        if repeat:
            join[1:] = (word[1:] == word[:-1]) & (i[1:] % max(desc["count"][2], 1) != 0) \
                & (i[1:] % repeat != 0)
        run = np.maximum.accumulate(np.where(join, 0, i))
        return np.flatnonzero((i - run) % values == 0)

    def _route(self, key, tag: np.ndarray, targets: dict) -> dict:
        """Per PE the indices of the packets it receives, in order, and the values
        delivered in all (cached: passes of one shape share it)."""
        got = self.route_cache.get(key)
        if got is not None:
            return got
        ids = sorted({rc for group in targets.values() for rc in group})
        index = {rc: k for k, rc in enumerate(ids)}
        ntags = max(targets, default=-1) + 1
        fan = max((len(g) for g in targets.values()), default=0)
        table = np.full((ntags, max(fan, 1)), -1, dtype=np.int64)
        for t, group in targets.items():
            table[t, :len(group)] = [index[rc] for rc in group]
        if len(tag) and fan:
            dest = table[tag]
            pkt = np.broadcast_to(np.arange(len(tag))[:, None], dest.shape)
            keep = dest >= 0
            dest, pkt = dest[keep], pkt[keep]
            order = np.argsort(dest, kind="stable")
            dest, pkt = dest[order], pkt[order]
            bounds = np.searchsorted(dest, np.arange(len(ids) + 1))
            per_pe = {rc: pkt[bounds[k]:bounds[k + 1]] for k, rc in enumerate(ids)}
            delivered = int(keep.sum())
        else:
            per_pe, delivered = {}, 0
        got = {"per_pe": per_pe, "delivered": delivered}
        self.route_cache[key] = got
        return got

    def _pass_key(self, streams) -> dict:
        """What the memo keys a pass on apart from the arbiter state, and what `_timing`
        needs of the pass to key it on that state (the same for every pass with these
        registers and streams: `_walk` keeps it)."""
        banked = self.cfg.glb_bank_reads
        used = lut = banks = None
        if banked:
            used, lut = self._banks_read(streams)
        keys = [self.raw[name] for name in ("run", "enable", "up", "filter_row_id",
                                            "filter_col_id", "ifmap_row_id", "ifmap_col_id",
                                            "psum_row_id", "psum_col_id")]
        for kind in KINDS:
            st = streams[kind]
            keys.append((st["shape"], st["miss"].tobytes(), tuple(st["targets"].items()),
                         None if st["n"] is None else st["n"].tobytes(),
                         lut[st["bank"][st["miss"]]].tobytes() if banked else None))
        gd, v = self.regs["gon_desc"], self.cfg.noc.gon_values
        phase = (gd["base"] % v, gd["col0"], gd["stride"] % v) if v > 1 else None
        if banked:
            banks = [set(lut[streams[k]["bank"][streams[k]["miss"]]].tolist()) for k in KINDS]
        return {"key": (self.cfg, self.reference, tuple(keys), gd["count"], phase),
                "lut": lut.tobytes() if banked else None, "used": used, "labels": lut,
                "banks": banks, "tops": self._tops(),
                "active": [len(streams[k]["word"]) > 0 for k in KINDS]}

    def _timing(self, streams, static: dict) -> PassTime:
        """The pass's `PassTime` from the memo, else timed (and memoized); ``static``: its
        `_pass_key`."""
        banked = self.cfg.glb_bank_reads
        used, lut, banks, tops = static["used"], static["labels"], static["banks"], \
            static["tops"]
        key = static["key"]
        whole = key + (self.rr, static["lut"])
        rr = self.rr
        if banked:
            rr = (tuple(self.rr[0][b] for b in used),) + self.rr[1:]  # one bank per label
        arb = None if self.reference or tops is None else \
            arbiter_key(rr, static["active"], tops, banks)
        fast = key + ("recurrences", arb)
        picked = key + ("picks",)  # timed from states that decide alike (`picks_hold`)
        got = PASS_MEMO.get(fast, whole, picks=(picked, rr)) if arb is not None else \
            PASS_MEMO.get(whole)
        if got is None:
            try:
                if self.reference:
                    raise Unordered()
                got = (pass_timing(self.cfg, self.regs, streams, self.rr), False)
                if banked and arb is not None:  # the last grants and picks kept per label
                    glb = tuple(got[0].rr[0][b] for b in used)
                    picks = got[0].picks and ({int(lut[b]): v for b, v in got[0].picks[0].items()},
                                              got[0].picks[1])
                    got = (dataclasses.replace(got[0], rr=(glb,) + got[0].rr[1:], picks=picks),
                           False)
            except Unordered:
                got = (reference_pass(self.cfg, self.regs, streams, self.rr), True)
            PASS_MEMO.put(fast if arb is not None and not got[1] else whole, got)
            if arb is not None and got[0].picks is not None:
                PASS_MEMO.add(picked, got)
        self.fallbacks += got[1]
        if arb is None or got[1]:
            return got[0]
        time = carry_state(got[0], rr, tops, banks)
        if banked:
            glb = list(self.rr[0])
            for b in np.flatnonzero(lut >= 0).tolist():
                glb[b] = time.rr[0][lut[b]]
            time = dataclasses.replace(time, rr=(tuple(glb),) + time.rr[1:])
        return time

    def _banks_read(self, streams):
        """A bank of each label and the labels of the GLB banks a pass's senders read (a
        table bank -> label, -1 for the others): a pass is timed alike whatever banks it
        reads as long as the same requests share one, so the memo keys it on the labels.
        Banks are labelled in order of first read (filter, ifmap, psum sender); when no
        two senders read one bank (a sender has one read at a time, so its own never
        contend), all of a sender's banks take one label, its own."""
        read = [streams[k]["bank"][streams[k]["miss"]] for k in KINDS]
        lut = np.full(read_ports(self.cfg), -1, dtype=np.int64)
        sets = [set(r.tolist()) for r in read if len(r)]
        if sum(map(len, sets)) == len(set().union(*sets)):
            for i, banks in enumerate(sets):
                lut[list(banks)] = i
        else:
            used = list(dict.fromkeys(np.concatenate(read).tolist()))
            lut[used] = np.arange(len(used))
        labels = int(lut.max()) + 1
        return [int(np.flatnonzero(lut == i)[0]) for i in range(labels)], lut

    def _grid(self) -> dict:
        """The enabled PEs of the pass the registers set up (`pe_grid`, cached)."""
        key = (self.raw["enable"], self.raw["up"], self.regs["run"]["accumulate"])
        grid = self.grid_cache.get(key)
        if grid is None:
            grid = self.grid_cache[key] = pe_grid(self.cfg, self.regs)
        return grid

    def _tops(self) -> dict | None:
        """Row -> sorted columns of the pass's top PEs; None when the grid is invalid
        (the timing raises)."""
        try:
            grid = self._grid()
        except ValueError:
            return None
        tops = {}
        for (r, c), pe in sorted(grid.items()):
            if pe.top:
                tops.setdefault(r, []).append(c)
        return tops

    def _gon_packets(self, grid: dict, total: int) -> int:
        """The GON packets of a pass: per top PE, its ``total`` psums in groups of
        ``noc.gon_values`` GLB slots (`ommatidia.hw.noc.GonPacker`)."""
        v = self.cfg.noc.gon_values
        if v == 1:
            return self.regs["gon_desc"]["count"]
        gd = self.regs["gon_desc"]
        phases = [(gd["base"] + (pe.c - gd["col0"]) * gd["stride"]) % v
                  for pe in grid.values() if pe.top]
        return sum((phase + total - 1) // v + 1 for phase in phases)

    def out_reads(self) -> tuple:
        """The GLB banks and words (first, past the last) the ``DMA_OUT`` in the registers
        reads."""
        cmd = self.regs["dma_out"]
        words = -(-cmd["n"] // self.per["psum"]) if cmd["rlc"] else cmd["n"]
        read = (cmd["glb"] + np.arange(words)) & self.word_mask
        return set(glb_bank(self.cfg, read).tolist()), cmd["glb"], cmd["glb"] + words

    def _check_beside(self, streams, grid, reads) -> None:
        """ValueError unless a pass beside a draining ``DMA_OUT`` (``reads``, `out_reads`)
        reads none of its GLB banks (each bank's reads are granted round-robin, which the
        pass's timing would then not follow) and writes none of its words."""
        banks, lo, hi = reads
        gw = self.fglb[0]
        shared = set()
        if self.cfg.glb_bank_reads:
            for kind in KINDS:
                word = streams[kind]["word"]
                shared |= banks & set(glb_bank(self.cfg, word[word < gw]).tolist())
        elif any(len(streams[k]["word"]) for k in KINDS):
            shared = banks
        gd, per, F, p = self.regs["gon_desc"], self.per["psum"], self.regs["run"]["F"], \
            self.regs["run"]["p"]
        firsts, counts = [], {}
        for (_, c), pe in sorted(grid.items()):
            if pe.top and gd["count"]:
                k0 = counts.get(c, 0)
                firsts.append(gd["base"] + (c - gd["col0"]) * gd["stride"] + k0)
                counts[c] = k0 + F * p
        writes = any(a // per < hi and lo <= (a + F * p - 1) // per for a in firsts)
        if shared or writes:
            raise ValueError(f"a PASS beside a DMA_OUT of GLB words {lo}..{hi - 1} reads its "
                             f"banks {sorted(shared)} or writes its words: not modelled")

    def run_pass(self, beside: tuple | None = None) -> int:
        """The cycles of the ``PASS`` in the registers; ``beside``: what a ``DMA_OUT``
        draining beside it reads (`out_reads`)."""
        regs = self.regs
        run = regs["run"]
        zero = [k for k in ("S", "W", "F", "U", "p", "q", "ring") if not run[k]]
        if zero and self.raw["enable"]:
            raise ValueError(f"PASS with {', '.join(zero)} = 0 in the run register: the "
                             f"enabled PEs would never finish")
        walk = self._walk()
        streams = walk["streams"]
        if beside is not None:
            self._check_beside(streams, self._grid(), beside)
        timing = self._timing(streams, walk["key"])
        self.rr = timing.rr
        S, W, F, U, p, q = (run[k] for k in ("S", "W", "F", "U", "p", "q"))
        grid = self._grid()
        n_pe = len(grid)
        ops = F * S * q * p
        if walk["counts"] is None:
            walk["counts"] = self._counts(streams, grid)
        reads, glb, noc, writes = walk["counts"]
        self.count["glb_reads"] += reads
        self.count["glb_writes"] += writes
        self.acc["glb"] += glb
        self.acc["noc"] += noc
        self.count["macs"] += n_pe * ops
        self.count["pe_stall_cycles"] += timing.pe_stalls
        self.count["noc_stall_cycles"] += timing.noc_stalls
        loads = n_pe * (W * q + (run["filter_count"] if run["load_filter"] else 0))
        zeros = self._compute(streams, grid, walk) if self.values else 0
        if not self.values:
            self.exact = False
        self.count["gated_macs"] += zeros
        self.count["mac_cycles"] += n_pe * ops - zeros
        self.acc["spad"] += n_pe * (F * S * q + 3 * ops - 2 * F * p) - zeros + loads
        return timing.cycles

    def _walk(self) -> dict:
        """What a ``PASS`` reads of the registers and tag tables, worked out once per
        distinct set of them (a layer's passes repeat a few: CONV3 on ``eyeriss``, 26 of
        512): its streams (`_streams`), its memo key but the arbiter state (`_pass_key`)
        and its GLB reads, GLB accesses, NoC deliveries and GLB writes. Only the data and
        the arbiter state differ between passes of one walk."""
        for e, table in enumerate(self.tags):
            if self.tag_keys[e] is None:
                self.tag_keys[e] = tuple((t, x["row"], x["col"], x["offset"])
                                         for t, x in table.items())
        key = tuple(self.raw[name] for name in PASS_REGISTERS) + tuple(self.tag_keys)
        got = self.walk_cache.get(key)
        if got is None:
            streams = self._streams()
            got = self.walk_cache[key] = {"streams": streams, "key": self._pass_key(streams),
                                          "counts": None}
        return got

    def _counts(self, streams, grid) -> tuple:
        """A pass's GLB reads, GLB accesses, NoC deliveries and GLB writes."""
        run = self.regs["run"]
        F, p = run["F"], run["p"]
        links = sum(1 for pe in grid.values() if not pe.top)
        gon = self.regs["gon_desc"]["count"]
        return (sum(int(streams[k]["miss"].sum()) for k in KINDS),
                sum(len(streams[k]["addr"]) for k in KINDS) + gon,
                sum(streams[k]["route"]["delivered"] for k in KINDS) + links * F * p + gon,
                self._gon_packets(grid, F * p) if gon else 0)

    def _compute(self, streams, grid, walk: dict) -> int:
        """Runs the pass on the data, psums into the GLB; returns the zero-gated MACs.
        ``walk``: the pass's `_walk`, which keeps what does not depend on the data
        (`_compute_plan`)."""
        plan = walk.get("compute")
        if plan is None:
            plan = walk["compute"] = self._compute_plan(grid)
        run = self.regs["run"]
        W, F, p, q = (run[k] for k in ("W", "F", "p", "q"))
        sch, rcs, pes = plan["sch"], plan["rcs"], plan["pes"]
        empty = np.zeros(0, dtype=np.int64)

        def gather(kind, need, pes=rcs):
            """Per PE of ``pes`` its first ``need`` values of ``kind``'s stream (0 past
            the end)."""
            st = streams[kind]
            if not len(st["addr"]) or not need:
                return np.zeros((len(pes), need), dtype=np.int64)
            idx = plan["idx"].get(kind)
            if idx is None:
                route = st["route"]
                key = (tuple(pes), need)
                idx = route.get(key)
                if idx is None:
                    idx = np.full((len(pes), need), len(st["addr"]), dtype=np.int64)
                    for n, rc in enumerate(pes):
                        got = route["per_pe"].get(rc, empty)[:need]
                        idx[n, :len(got)] = got
                    route[key] = idx
                plan["idx"][kind] = idx
            at = st.get("slots")
            if at is None:
                at = st["slots"] = self._slots(kind, st["addr"])
            vals = np.append(self._read(kind, st["addr"], at), 0)
            return vals[idx]

        X = gather("ifmap", W * q).reshape(len(rcs), W, q)
        if run["load_filter"]:
            loaded = gather("filter", run["filter_count"])
            if self.filters[0] != pes:  # the held rows are kept unless these replace them
                self.filter_rows.update(zip(*self.filters))
            self.filters = (pes, loaded)
        held_rcs, held = self.filters
        if held_rcs == pes and held.shape[1] >= sch.ops:
            Wt = held[:, :sch.ops]
        else:
            self.filter_rows.update(zip(*self.filters))
            Wt = np.zeros((len(rcs), sch.ops), dtype=np.int64)
            for n, rc in enumerate(rcs):
                w = self.filter_rows.get(rc, empty)[:sch.ops]
                Wt[n, :len(w)] = w
        Wt = Wt.reshape(len(rcs), *sch.filter_shape)
        if plan["inside"]:  # each output's window, one after another (BLAS-friendly)
            st = X.strides
            win = as_strided(X, (len(rcs), F, run["S"], q), (st[0], run["U"] * st[1], st[1],
                                                             st[2]), writeable=False)
        else:
            win = X[:, plan["cols"], :]
        win = win.reshape(len(rcs), F, -1)
        own = int_matmul(win, Wt.reshape(len(rcs), -1, p),
                         self.bits["ifmap"], self.bits["filter"])
        zeros = int(np.count_nonzero(win == 0)) * p
        gin = plan["gin"]
        if gin:
            own[gin] += gather("psum", F * p, plan["gin_pes"]).reshape(len(gin), F, p)
        if not plan["tops"]:
            return zeros
        psums = wrap(np.add.reduceat(own[plan["order"]], plan["starts"]).reshape(-1),
                     self.cfg.pe.psum_bits)
        if plan["apart"]:
            self._write_planned("psum", plan["writes"][0], psums)
        else:  # a slot written twice: the later write wins, as one top after another
            for w, v in zip(plan["writes"], np.split(psums, plan["splits"])):
                self._write_planned("psum", w, v)
        return zeros

    def _compute_plan(self, grid) -> dict:
        """What `_compute` needs of a pass apart from the data: its PEs in order, their
        schedule, the columns of each output's window (and whether they are all within
        the ifmap row), the psum chains (`_chains`) and the GLB addresses the top PEs write their
        psums to (`_slot_plan`; one plan when no two overlap)."""
        regs = self.regs
        run, gd = regs["run"], regs["gon_desc"]
        S, F, U, p = run["S"], run["F"], run["U"], run["p"]
        rcs = sorted(grid)
        cols = np.arange(F)[:, None] * U + np.arange(S)[None, :]
        tops, order, starts, gin = self._chains(grid, rcs)
        amask = (1 << self.abits) - 1
        counts, spans = {}, []
        for rc in tops:
            k0 = counts.get(rc[1], 0)
            spans.append((gd["base"] + (rc[1] - gd["col0"]) * gd["stride"] + k0, F * p))
            counts[rc[1]] = k0 + F * p
        addrs = [(a + np.arange(n)) & amask for a, n in spans]
        ends = sorted((a & amask, n) for a, n in spans)
        apart = all(a + n <= amask + 1 for a, n in ends) \
            and all(a0 + n0 <= a1 for (a0, n0), (a1, _) in zip(ends, ends[1:]))
        writes = [self._slot_plan("psum", a) for a in
                  ([np.concatenate(addrs)] if apart and addrs else addrs)]
        return {"rcs": rcs, "pes": tuple(rcs), "sch": Schedule.of(run), "idx": {},
                "cols": cols, "inside": not cols.size or int(cols.max()) < run["W"],
                "tops": tops, "order": order, "starts": starts, "gin": gin,
                "gin_pes": [rcs[n] for n in gin], "writes": writes, "apart": apart,
                "splits": np.cumsum([len(a) for a in addrs])[:-1]}

    def _chains(self, grid, rcs) -> tuple:
        """The psum chains of a pass's PEs (cached per grid): the top PEs in order, the
        indices into ``rcs`` of each top's chain one after another, where each chain
        starts, and the PEs adding psums from the GLB (`gather` of the psum sender)."""
        key = (self.raw["enable"], self.raw["up"], self.regs["run"]["accumulate"])
        got = self.chain_cache.get(key)
        if got is None:
            index = {rc: n for n, rc in enumerate(rcs)}
            out = {}
            for rc in sorted(rcs, key=lambda x: (x[1], -x[0])):
                below = out.pop((rc[0] + 1, rc[1])) if grid[rc].below is not None else []
                out[rc] = [index[rc]] + below
            tops = sorted(out)
            sizes = [len(out[rc]) for rc in tops]
            got = (tops, [n for rc in tops for n in out[rc]],
                   np.cumsum([0] + sizes[:-1]).astype(np.int64),
                   [index[rc] for rc in rcs if grid[rc].gin and grid[rc].below is None])
            self.chain_cache[key] = got
        return got
