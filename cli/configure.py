"""The configuration options every command shares (``--preset``, ``--config``, ``--set``)
and the ``config`` command that prints the configuration they give."""

from __future__ import annotations

import json

from ommatidia.gen.config import PRESETS, config_fields, config_toml, configure

__all__ = ["add_config_options", "config_of", "cmd_config"]

CONFIG_HELP = ("TOML or JSON file of configuration fields on top of the preset "
               "(rows = 8, [pe] ifmap_spad_depth = 24; `ommatidia config` prints one)")
SET_HELP = ("set one configuration field on top of the preset and --config (repeatable): "
            "rows=8, pe.ifmap_spad_depth=24, rlc_codec=false, tag_depth=none")


def add_config_options(p, default: str | None = "eyeriss", *, preset: bool = True,
                       preset_help: str | None = None) -> None:
    """Add ``--preset`` (unless ``preset`` is False), ``--config FILE`` and repeatable
    ``--set KEY=VALUE`` to parser ``p``."""
    if preset:
        p.add_argument("--preset", default=default, choices=sorted(PRESETS),
                       help=preset_help or f"configuration preset (default: {default})")
    p.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help=SET_HELP)


def config_of(args, base=None):
    """The `ArrayConfig` of ``args``: ``base`` (default: ``args.preset``) with ``--config``
    and ``--set`` on top (`ommatidia.gen.config.configure`)."""
    return configure(base if base is not None else args.preset, args.config, args.sets)


def cmd_config(args) -> int:
    """Print the configuration of --preset, --config and --set as TOML (or JSON)."""
    cfg = config_of(args)
    if args.json:
        print(json.dumps(config_fields(cfg), indent=2))
    else:
        print(config_toml(cfg), end="")
    return 0
