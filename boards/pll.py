"""The board clock: the FPGA's PLL makes the design's clock from the board oscillator.

`ecp5_pll` and `ice40_pll` choose the dividers of an ECP5 EHXPLLL and an iCE40
SB_PLL40 for an output frequency within each family's limits (`ECP5_LIMITS`,
`ICE40_LIMITS`, from the datasheets); `PLLClock` instantiates the primitive and
drives the ``sync`` domain's clock from its output and its reset until the PLL locks
(and `POR_SECONDS` longer: iCE40 block RAM reads zeroes for about 3 us after
configuration).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from amaranth import ClockDomain, ClockSignal, Elaboratable, Instance, Module, Signal
from amaranth.lib.cdc import FFSynchronizer, ResetSynchronizer

__all__ = ["PLL", "Limits", "ECP5_LIMITS", "ICE40_LIMITS", "ecp5_pll", "ice40_pll", "pll",
           "PLLClock", "LockReset", "POR_SECONDS", "DEFAULT_TOLERANCE"]


@dataclass(frozen=True)
class Limits:
    """A PLL family's frequency limits in MHz, inclusive."""

    f_in: tuple
    pfd: tuple
    vco: tuple
    f_out: tuple


ECP5_LIMITS = Limits(f_in=(8.0, 400.0), pfd=(3.125, 400.0), vco=(400.0, 800.0),
                     f_out=(3.125, 400.0))
"""ECP5 EHXPLLL (ECP5 family data sheet, sysCLOCK PLL timing): CLKI_DIV 1-128,
CLKFB_DIV 1-80, CLKOP_DIV 1-128."""

ICE40_LIMITS = Limits(f_in=(10.0, 133.0), pfd=(10.0, 133.0), vco=(533.0, 1066.0),
                      f_out=(16.0, 275.0))
"""iCE40 SB_PLL40 (iCE40 sysCLOCK PLL guide, TN1251): DIVR 0-15, DIVF 0-127, DIVQ 1-6,
``SIMPLE`` feedback."""

DEFAULT_TOLERANCE = 0.001
"""Largest relative error of the output frequency a PLL function accepts by default."""

POR_SECONDS = 15e-6
"""How long ``sync`` stays in reset after the PLL locks."""


@dataclass(frozen=True)
class PLL:
    """A PLL's dividers for one output: what `PLLClock` instantiates.

    ``params`` are the primitive's divider parameters (EHXPLLL: ``CLKI_DIV``,
    ``CLKFB_DIV``, ``CLKOP_DIV``; SB_PLL40: ``DIVR``, ``DIVF``, ``DIVQ``,
    ``FILTER_RANGE``); frequencies in MHz, ``f_out_mhz`` the one achieved, ``error`` its
    relative distance from the one asked for.
    """

    family: str
    f_in_mhz: float
    f_out_mhz: float
    pfd_mhz: float
    vco_mhz: float
    params: tuple
    error: float = 0.0

    def param(self, name: str) -> int:
        return dict(self.params)[name]


def _exact(mhz: float) -> Fraction:
    """``mhz`` as the decimal it was written as (52.8 is 264/5, not the nearest double)."""
    return Fraction(str(mhz))


def _within(value: Fraction, bounds: tuple) -> bool:
    return Fraction(bounds[0]) <= value <= Fraction(bounds[1])


def _check_range(own: str, name: str, value: float, bounds: tuple, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value):
        raise ValueError(f"{own} {name} must be a number of MHz, not {value!r}")
    if not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{own} {name} {value:g} MHz is outside the {what} range "
                         f"{bounds[0]:g}-{bounds[1]:g} MHz")


def _best(own: str, f_in: float, f_out: float, tolerance: float, candidates, family: str):
    """The candidate ``(f_out, pfd, vco, params)`` nearest ``f_out`` (then the highest VCO,
    for the least jitter), or ValueError when none is within ``tolerance``."""
    if not tolerance >= 0:
        raise ValueError(f"{own} tolerance must be at least 0, not {tolerance!r}")
    want = _exact(f_out)
    best = min(candidates, key=lambda c: (abs(c[0] - want), -c[2]), default=None)
    if best is None:
        raise ValueError(f"{own} f_in_mhz {f_in:g} MHz gives no phase-detector frequency "
                         f"within the limits")
    error = float(abs(best[0] - want) / want)
    if error > tolerance:
        raise ValueError(f"{own} f_out_mhz {f_out:g} MHz cannot be made from {f_in:g} MHz "
                         f"within {tolerance:.3%}: the nearest is {float(best[0]):.4f} MHz")
    return PLL(family, f_in, float(best[0]), float(best[1]), float(best[2]), best[3], error)


def ecp5_pll(f_in_mhz: float, f_out_mhz: float, tolerance: float = DEFAULT_TOLERANCE) -> PLL:
    """EHXPLLL dividers (feedback from CLKOP) for ``f_out_mhz`` from ``f_in_mhz``:
    f_out = f_in x CLKFB_DIV / CLKI_DIV, VCO = f_out x CLKOP_DIV."""
    own, lim = "ecp5_pll", ECP5_LIMITS
    _check_range(own, "f_in_mhz", f_in_mhz, lim.f_in, "EHXPLLL input")
    _check_range(own, "f_out_mhz", f_out_mhz, lim.f_out, "EHXPLLL output")
    f_in = _exact(f_in_mhz)

    def candidates():
        for clki in range(1, 129):
            pfd = f_in / clki
            if not _within(pfd, lim.pfd):
                continue
            for clkfb in range(1, 81):  # each with the highest VCO its output allows
                out = pfd * clkfb
                if not _within(out, lim.f_out):
                    continue
                clkop = min(128, math.floor(Fraction(lim.vco[1]) / out))
                if clkop >= 1 and _within(out * clkop, lim.vco):
                    yield out, pfd, out * clkop, (("CLKI_DIV", clki), ("CLKFB_DIV", clkfb),
                                                  ("CLKOP_DIV", clkop))

    return _best(own, f_in_mhz, f_out_mhz, tolerance, candidates(), "ecp5")


def _ice40_filter_range(pfd: Fraction) -> int:
    """SB_PLL40 loop filter setting for the phase-detector frequency (TN1251, as icepll)."""
    for setting, below in enumerate((17, 26, 44, 66, 101), start=1):
        if pfd < below:
            return setting
    return 6


def ice40_pll(f_in_mhz: float, f_out_mhz: float, tolerance: float = DEFAULT_TOLERANCE) -> PLL:
    """SB_PLL40 dividers (``SIMPLE`` feedback) for ``f_out_mhz`` from ``f_in_mhz``:
    f_out = f_in x (DIVF + 1) / ((DIVR + 1) x 2^DIVQ), VCO = f_out x 2^DIVQ."""
    own, lim = "ice40_pll", ICE40_LIMITS
    _check_range(own, "f_in_mhz", f_in_mhz, lim.f_in, "SB_PLL40 input")
    _check_range(own, "f_out_mhz", f_out_mhz, lim.f_out, "SB_PLL40 output")
    f_in = _exact(f_in_mhz)

    def candidates():
        for divr in range(16):
            pfd = f_in / (divr + 1)
            if not _within(pfd, lim.pfd):
                continue
            for divf in range(128):
                vco = pfd * (divf + 1)
                if not _within(vco, lim.vco):
                    continue
                for divq in range(1, 7):
                    out = vco / (1 << divq)
                    if _within(out, lim.f_out):
                        yield out, pfd, vco, (("DIVR", divr), ("DIVF", divf), ("DIVQ", divq),
                                              ("FILTER_RANGE", _ice40_filter_range(pfd)))

    return _best(own, f_in_mhz, f_out_mhz, tolerance, candidates(), "ice40")


def pll(family: str, f_in_mhz: float, f_out_mhz: float,
        tolerance: float = DEFAULT_TOLERANCE) -> PLL:
    """`ecp5_pll` or `ice40_pll` by FPGA family."""
    makers = {"ecp5": ecp5_pll, "ice40": ice40_pll}
    if family not in makers:
        raise ValueError(f"pll family must be one of {', '.join(makers)}, not {family!r}")
    return makers[family](f_in_mhz, f_out_mhz, tolerance)


class PLLClock(Elaboratable):
    """Clock and reset of the ``sync`` domain (defined by the parent) at ``made.f_out_mhz``
    from the board oscillator's pin ``clk_port`` (``platform.request(default_clk,
    dir="-")``) through the PLL; ``sync`` is reset until the PLL has locked and
    `POR_SECONDS` more have passed.

    nextpnr derives the output's clock constraint from the oscillator's and the PLL's
    dividers ("Derived frequency constraint"): a constraint on the output net by name
    would name a net that synthesis renames.
    """

    def __init__(self, made: PLL, clk_port):
        self.pll = made
        self.clk_port = clk_port
        self.locked = Signal()

    def _primitive(self, m: Module, out: Signal) -> None:
        p = self.pll
        if p.family == "ecp5":
            from amaranth.lib import io
            m.submodules.clk_buf = clk_buf = io.Buffer("i", self.clk_port)
            op = p.param("CLKOP_DIV")
            m.submodules.pll = Instance(
                "EHXPLLL",
                a_FREQUENCY_PIN_CLKI=f"{p.f_in_mhz:g}", a_FREQUENCY_PIN_CLKOP=f"{p.f_out_mhz:g}",
                a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
                a_MFG_GMCREF_SEL="2",
                p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED",
                p_FEEDBK_PATH="CLKOP", p_CLKI_DIV=p.param("CLKI_DIV"),
                p_CLKFB_DIV=p.param("CLKFB_DIV"), p_CLKOP_DIV=op, p_CLKOP_CPHASE=op - 1,
                p_CLKOP_FPHASE=0,
                i_CLKI=clk_buf.i, i_CLKFB=out, i_RST=0, i_STDBY=0, i_PHASESEL0=0,
                i_PHASESEL1=0, i_PHASEDIR=0, i_PHASESTEP=0, i_PHASELOADREG=0,
                i_PLLWAKESYNC=0, i_ENCLKOP=0,
                o_CLKOP=out, o_LOCK=self.locked)
        else:
            m.submodules.pll = Instance(
                "SB_PLL40_PAD",
                p_FEEDBACK_PATH="SIMPLE", p_PLLOUT_SELECT="GENCLK",
                p_DIVR=p.param("DIVR"), p_DIVF=p.param("DIVF"), p_DIVQ=p.param("DIVQ"),
                p_FILTER_RANGE=p.param("FILTER_RANGE"),
                i_PACKAGEPIN=self.clk_port.io, i_RESETB=1, i_BYPASS=0,
                o_PLLOUTGLOBAL=out, o_LOCK=self.locked)

    def elaborate(self, platform):
        m = Module()
        m.domains.por = ClockDomain("por", reset_less=True, local=True)
        out = Signal()
        self._primitive(m, out)
        m.d.comb += [ClockSignal("sync").eq(out), ClockSignal("por").eq(out)]
        m.submodules.lock_reset = lock_reset = LockReset(
            max(1, math.ceil(POR_SECONDS * self.pll.f_out_mhz * 1e6)))
        m.d.comb += lock_reset.locked.eq(self.locked)
        return m


class LockReset(Elaboratable):
    """Holds ``sync`` in reset while ``locked`` (asynchronous, from the PLL) is low and for
    ``delay`` cycles of the reset-less ``por`` domain after it rises; the release is
    synchronous to ``sync``."""

    def __init__(self, delay: int):
        self.delay = delay
        self.locked = Signal()

    def elaborate(self, platform):
        m = Module()
        locked = Signal()
        m.submodules.lock_sync = FFSynchronizer(self.locked, locked, o_domain="por")
        count, ready = Signal(range(self.delay + 1)), Signal()
        with m.If(~locked):
            m.d.por += count.eq(0)
        with m.Elif(count != self.delay):
            m.d.por += count.eq(count + 1)
        m.d.por += ready.eq(locked & (count == self.delay))
        m.submodules.reset_sync = ResetSynchronizer(~ready, domain="sync")
        return m
