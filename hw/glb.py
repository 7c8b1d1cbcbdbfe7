"""The global buffer (GLB): banked SRAM with one read and one write port, round-robin.

The GLB holds ``cfg.glb_banks`` banks of ``cfg.glb_bank_words`` words of
``cfg.dram_bits`` (`amaranth.lib.memory`, synchronous read, so each bank maps
to block RAM). Word address ``a`` lives in bank ``a // glb_bank_words``.
Clients share one read port and one write port, each granted round-robin
(the client after the last one granted goes first):

- a read client raises ``addr.valid`` with a word address and holds it until
  ``addr.ready``; one cycle after that grant the GLB pulses its ``valid`` with
  ``data`` (a client requests only when it can take the response);
- a write client sends ``(addr, data, mask)`` on a stream; the word is written
  at the grant, only the bytes whose ``mask`` bit is set.

Each port grants one request a cycle. With ``cfg.glb_bank_reads`` each bank has
its own read port instead, granting one read a cycle round-robin among the clients
whose request addresses it (a request past the last bank addresses the last), so
clients reading different banks are granted in the same cycle. A read during a
write of the same address returns the old word.

Elements are packed into words in power-of-two slots (`slot_bits`): 8-bit
activations 8 to a 64-bit word, 24-bit psums 2. Element address ``ea`` of a
``b``-bit slot is slot ``ea % (dram_bits // b)`` of word ``ea // (dram_bits // b)``;
slot ``k`` holds bits ``[k*b + b - 1 : k*b]``, sign-extended from the element.
"""

from __future__ import annotations

from amaranth import Cat, Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ommatidia.gen.config import ArrayConfig

__all__ = ["GLB", "GLBReadSignature", "glb_write_layout", "glb_words", "filter_glb_words",
           "filter_glb_word", "word_addr_bits",
           "elem_addr_bits", "slot_bits", "round_robin"]


def glb_words(cfg: ArrayConfig) -> int:
    """Words in the GLB."""
    return cfg.glb_banks * cfg.glb_bank_words


def filter_glb_words(cfg: ArrayConfig) -> int:
    """Words in the filter GLB (0: none)."""
    return cfg.filter_glb_bytes * 8 // cfg.dram_bits


def filter_glb_word(cfg: ArrayConfig) -> int:
    """GLB words (of ``dram_bits``) in one filter GLB word: enough for the
    ``noc.filter_gin_values`` weights of a filter GIN packet, at least one (and one
    without a filter GLB, whose filters stay in GLB words)."""
    if not filter_glb_words(cfg):
        return 1
    return max(1, cfg.noc.filter_gin_values * slot_bits(cfg.pe.weight_bits, cfg.dram_bits)
               // cfg.dram_bits)


def word_addr_bits(cfg: ArrayConfig) -> int:
    """Width of a GLB word address: the GLB's words, then the filter GLB's (words
    `glb_words` on, which `DMAIn` writes and the filter sender reads there)."""
    return max(1, (glb_words(cfg) + filter_glb_words(cfg) - 1).bit_length())


def elem_addr_bits(cfg: ArrayConfig) -> int:
    """Width of an element address (8-bit slots, the smallest)."""
    return word_addr_bits(cfg) + (cfg.dram_bits // 8 - 1).bit_length()


def slot_bits(bits: int, word_bits: int = 64) -> int:
    """Power-of-two slot (at least 8 bits) holding a ``bits``-bit element in a word."""
    slot = 8
    while slot < bits:
        slot *= 2
    if slot > word_bits or word_bits % slot:
        raise ValueError(f"a {bits}-bit element needs a {slot}-bit slot, which does not "
                         f"divide a {word_bits}-bit GLB word")
    return slot


def glb_write_layout(cfg: ArrayConfig, addr_bits: int | None = None) -> data.StructLayout:
    """Payload of a GLB write: word address (``addr_bits`` wide, `word_addr_bits` by
    default), word, byte mask."""
    return data.StructLayout({"addr": unsigned(addr_bits or word_addr_bits(cfg)),
                              "data": unsigned(cfg.dram_bits),
                              "mask": unsigned(cfg.dram_bits // 8)})


class GLBReadSignature(wiring.Signature):
    """A GLB read client (its side): ``addr`` request stream; ``data``, ``valid`` response
    (``words`` GLB words wide: the filter sender's, `filter_glb_word`)."""

    def __init__(self, cfg: ArrayConfig, words: int = 1):
        super().__init__({"addr": Out(stream.Signature(unsigned(word_addr_bits(cfg)))),
                          "data": In(words * cfg.dram_bits),
                          "valid": In(1)})


def round_robin(m: Module, requests: list, name: str) -> list:
    """One-hot grants of ``requests``, round-robin from the one after the last granted."""
    n = len(requests)
    grants = [Signal(name=f"{name}_grant{i}") for i in range(n)]
    if n == 1:
        m.d.comb += grants[0].eq(requests[0])
        return grants
    last = Signal(range(n), init=n - 1, name=f"{name}_last")
    with m.Switch(last):
        for prev in range(n):
            with m.Case(prev):
                order = [(prev + 1 + j) % n for j in range(n)]
                for j, i in enumerate(order):
                    with (m.If if j == 0 else m.Elif)(requests[i]):
                        m.d.comb += grants[i].eq(1)
                        m.d.sync += last.eq(i)
    return grants


def _in_bank(addr, lo: int, hi: int):
    """``lo <= addr < hi``, without comparisons that are constant."""
    cond = [addr >= lo] if lo else []
    if hi < 1 << len(addr):
        cond.append(addr < hi)
    return Cat(cond).all() if cond else 1


class GLB(wiring.Component):
    """Banked global buffer with ``readers`` read clients and ``writers`` write clients.

    One read (with ``cfg.glb_bank_reads`` one per bank) and one write a cycle,
    each port round-robin among its clients; read data comes one cycle after the
    grant. See the module docstring for the protocol and the element packing.

    Parameters
    ----------
    cfg : ArrayConfig
        ``glb_banks``, ``glb_bank_words``, ``glb_bank_reads``, ``dram_bits``.
    readers, writers : int
        Number of read and write clients.

    Members
    -------
    read : In(GLBReadSignature(cfg)), array of ``readers``
    write : In(stream of glb_write_layout(cfg)), array of ``writers``
    """

    def __init__(self, cfg: ArrayConfig, readers: int, writers: int):
        if not isinstance(cfg, ArrayConfig):
            raise TypeError(f"GLB takes an ArrayConfig, not {cfg!r}")
        for name, n in (("readers", readers), ("writers", writers)):
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 16:
                raise ValueError(f"GLB {name} must be an integer in 1..16, not {n!r}")
        self._cfg = cfg
        super().__init__({
            "read": In(GLBReadSignature(cfg)).array(readers),
            "write": In(stream.Signature(glb_write_layout(cfg))).array(writers),
        })

    def elaborate(self, platform):
        cfg = self._cfg
        words, banks = cfg.glb_bank_words, cfg.glb_banks
        banked = cfg.glb_bank_reads
        m = Module()

        if not banked:
            rgrant = round_robin(m, [r.addr.valid for r in self.read], "rd")
            raddr = Signal(word_addr_bits(cfg))
            for r, g in zip(self.read, rgrant):
                m.d.comb += r.addr.ready.eq(g)
                with m.If(g):
                    m.d.comb += raddr.eq(r.addr.payload)
            rany = Cat(rgrant).any()

        wgrant = round_robin(m, [w.valid for w in self.write], "wr")
        wreq = Signal(glb_write_layout(cfg))
        for w, g in zip(self.write, wgrant):
            m.d.comb += w.ready.eq(g)
            with m.If(g):
                m.d.comb += wreq.eq(w.payload)
        wany = Cat(wgrant).any()

        rbank = Signal(range(banks))
        outs, ready = [], [[] for _ in self.read]
        for b in range(banks):
            mem = Memory(shape=unsigned(cfg.dram_bits), depth=words, init=[])
            m.submodules[f"bank{b}"] = mem
            rport = mem.read_port()
            wport = mem.write_port(granularity=8)
            lo, hi = b * words, (b + 1) * words
            if banked:
                self._bank_read(m, rport, b, lo, 1 << 62 if b == banks - 1 else hi, ready)
            else:
                rhit = _in_bank(raddr, lo, hi)
                m.d.comb += [rport.addr.eq(raddr - lo), rport.en.eq(rany & rhit)]
            m.d.comb += [
                wport.addr.eq(wreq.addr - lo),
                wport.data.eq(wreq.data),
                wport.en.eq(wreq.mask & (wany & _in_bank(wreq.addr, lo, hi))
                            .replicate(len(wport.en))),
            ]
            if not banked:
                with m.If(rany & rhit):
                    m.d.sync += rbank.eq(b)
            outs.append(rport.data)

        if banked:
            self._bank_data(m, ready, outs)
            return m
        rdata = Signal(cfg.dram_bits)
        with m.Switch(rbank):
            for b in range(banks):
                with m.Case(b):
                    m.d.comb += rdata.eq(outs[b])
        for r, g in zip(self.read, rgrant):
            m.d.sync += r.valid.eq(g)
            m.d.comb += r.data.eq(rdata)
        return m

    def _bank_read(self, m: Module, rport, b: int, lo: int, hi: int, ready) -> None:
        """Bank ``b``'s read port: round-robin among the clients addressing ``lo .. hi``;
        each client's grants go to ``ready``."""
        grant = round_robin(m, [r.addr.valid & _in_bank(r.addr.payload, lo, hi)
                                for r in self.read], f"rd_bank{b}")
        for i, (r, g) in enumerate(zip(self.read, grant)):
            ready[i].append(g)
            with m.If(g):
                m.d.comb += rport.addr.eq(r.addr.payload - lo)
        m.d.comb += rport.en.eq(Cat(grant).any())

    def _bank_data(self, m: Module, ready, outs) -> None:
        """Each client's grant (from any bank) and, the cycle after, the word of the bank
        that granted it."""
        for i, (r, grants) in enumerate(zip(self.read, ready)):
            bank = Signal(range(len(outs)), name=f"rd{i}_bank")
            for b, g in enumerate(grants):
                with m.If(g):
                    m.d.sync += bank.eq(b)
            m.d.comb += r.addr.ready.eq(Cat(grants).any())
            m.d.sync += r.valid.eq(r.addr.ready)
            with m.Switch(bank):
                for b, word in enumerate(outs):
                    with m.Case(b):
                        m.d.comb += r.data.eq(word)
