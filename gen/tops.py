"""The components `ommatidia generate --top NAME` can emit, built from an `ArrayConfig`."""

from __future__ import annotations

from typing import Callable

from .config import ArrayConfig

__all__ = ["TOPS", "build_top"]


def _pe(cfg: ArrayConfig):
    from ommatidia.hw.pe import PE
    return PE(cfg.pe)


TOPS: dict[str, tuple[Callable[[ArrayConfig], object], str]] = {
    "pe": (_pe, "one processing element (filter/ifmap/psum spads, MAC, zero gating)"),
}


def build_top(name: str, cfg: ArrayConfig):
    """Instantiate top ``name`` for ``cfg``; raises ValueError for an unknown name."""
    try:
        factory, _ = TOPS[name]
    except KeyError:
        raise ValueError(f"unknown top {name!r}; choose one of {', '.join(TOPS)}") from None
    return factory(cfg)
