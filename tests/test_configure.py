"""A configuration from a preset, a TOML or JSON file and --set settings
(`ommatidia.gen.config.configure`), and the `ommatidia config` command."""

import dataclasses
import json

import pytest

from ommatidia.cli import main
from ommatidia.gen.config import (PRESETS, TINY, config_fields, config_from_fields, config_toml,
                                  configure)


def test_sets_replace_fields_and_name_the_result():
    cfg = configure("tiny", None, ["rows=5", "pe.ifmap_spad_depth=24", "rlc_codec=false",
                                   "tag_depth=9", "clock_mhz=75.5"])
    assert (cfg.rows, cfg.pe.ifmap_spad_depth, cfg.rlc_codec, cfg.tag_depth, cfg.clock_mhz) \
        == (5, 24, False, 9, 75.5)
    assert cfg.cols == TINY.cols and cfg.pe.psum_spad_depth == TINY.pe.psum_spad_depth
    assert cfg.name.startswith("tiny-") and len(cfg.name) == len("tiny-") + 6
    assert configure("tiny", None, ["pe.ifmap_spad_depth=24", "rows=5", "rlc_codec=false",
                                    "tag_depth=9", "clock_mhz=75.5"]).name == cfg.name
    assert configure("tiny", None, ["rows=3"]) == TINY  # no change: still the preset
    assert configure("tiny", None, ["rows=5", "name=mine"]).name == "mine"
    assert configure(TINY, None, ["tag_depth=none"]).tag_depth is None


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_toml_and_fields_read_back_to_the_same_configuration(name, tmp_path):
    cfg = configure(name, None, ["cols=3", "noc.col_id_bits=4"])
    path = tmp_path / "c.toml"
    path.write_text(config_toml(cfg))
    assert configure(name, path) == cfg
    assert config_from_fields(json.loads(json.dumps(config_fields(cfg)))) == cfg


def test_file_then_sets_on_top(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("rows = 5\n[pe]\nifmap_spad_depth = 20\npsum_spad_depth = 6\n")
    cfg = configure("tiny", toml, ["pe.ifmap_spad_depth=30"])
    assert (cfg.rows, cfg.pe.ifmap_spad_depth, cfg.pe.psum_spad_depth) == (5, 30, 6)
    js = tmp_path / "c.json"
    js.write_text('{"rows": 5, "noc": {"row_id_bits": 3}, "pe": {"ifmap_spad_depth": 20}, '
                  '"tag_depth": null}')
    cfg = configure("icebreaker", js)
    assert (cfg.rows, cfg.pe.ifmap_spad_depth, cfg.tag_depth) == (5, 20, None)


@pytest.mark.parametrize("sets, words", [
    (["rows=300"], "ArrayConfig.rows must be at most 256, not 300"),
    (["pe.psum_bits=8"], "PEConfig.psum_bits must be at least act_bits + weight_bits"),
    (["rows=8"], "ArrayConfig.rows = 8 needs row IDs 0..7 below the broadcast tag 7"),
    (["rows=x"], "--set rows must be an integer, not 'x'"),
    (["rows=3", "rows=4"], "--set rows is given twice"),
    (["pe.act_bits=6", " pe.act_bits =7"], "--set pe.act_bits is given twice"),
    (["row=3"], "'row' is not a configuration field"),
    (["pe.depth=3"], "'depth' is not a PEConfig field"),
    (["pe=3"], "pe must be a table of PEConfig fields"),
    (["rows.x=3"], "rows is a value, not a table"),
    (["rows"], "--set takes KEY=VALUE"),
    (["pe.a.b=1"], "--set takes KEY=VALUE"),
    (["rlc_codec=yes"], "--set rlc_codec must be true or false"),
    (["name=../x"], "ArrayConfig.name must be letters, digits"),
    (["clock_mhz=inf"], "ArrayConfig.clock_mhz must be positive"),
])
def test_bad_settings_are_rejected_naming_the_field(sets, words):
    with pytest.raises(ValueError) as exc:
        configure("tiny", None, sets)
    assert words in str(exc.value)


@pytest.mark.parametrize("name, text, words", [
    ("c.toml", "rows = 4\nrows = 5\n", "is not valid TOML"),
    ("c.toml", "[pe]\nact_bits = 8\n[pe]\nact_bits = 6\n", "is not valid TOML"),
    ("c.json", '{"rows": 4, "rows": 5}', "key 'rows' is given twice"),
    ("c.json", '{"pe": {"act_bits": 8, "act_bits": 6}}', "key 'act_bits' is given twice"),
    ("c.json", "[1, 2]", "must hold a table of fields, not list"),
    ("c.toml", "rows = 4.0\n", "ArrayConfig.rows must be an integer, not 4.0"),
    ("c.toml", "rows = true\n", "ArrayConfig.rows must be an integer, not True"),
    ("c.toml", "[pe]\nfilter = 3\n", "'filter' is not a PEConfig field"),
    ("c.yaml", "rows: 4\n", "must end in .toml or .json"),
    ("c.toml", "", None),  # an empty file changes nothing
])
def test_bad_files_are_rejected_naming_the_file(tmp_path, name, text, words):
    path = tmp_path / name
    path.write_text(text)
    if words is None:
        assert configure("tiny", path) == TINY
        return
    with pytest.raises(ValueError) as exc:
        configure("tiny", path)
    assert words in str(exc.value)
    if "Config." not in words:
        assert str(path) in str(exc.value)


def test_missing_and_directory_files(tmp_path):
    for path, words in ((tmp_path / "none.toml", "does not exist"),
                        (tmp_path, "must end in .toml or .json")):
        with pytest.raises(ValueError, match=words):
            configure("tiny", path)
    folder = tmp_path / "d.toml"
    folder.mkdir()
    with pytest.raises(ValueError, match="is a directory"):
        configure("tiny", folder)


def test_config_command_prints_toml_that_reads_back(tmp_path, capsys):
    assert main(["config", "--preset", "small", "--set", "cols=5",
                 "--set", "pe.psum_spad_depth=12"]) == 0
    text = capsys.readouterr().out
    assert "cols = 5" in text and "psum_spad_depth = 12" in text
    path = tmp_path / "c.toml"
    path.write_text(text)
    assert main(["config", "--preset", "small", "--config", str(path), "--json"]) == 0
    fields = json.loads(capsys.readouterr().out)
    assert fields["cols"] == 5 and fields["pe"]["psum_spad_depth"] == 12
    assert config_from_fields(fields) == dataclasses.replace(
        PRESETS["small"], name=fields["name"], cols=5,
        pe=dataclasses.replace(PRESETS["small"].pe, psum_spad_depth=12))


def test_map_takes_the_configuration(capsys):
    assert main(["map", "--preset", "tiny", "--set", "cols=2", "--layer",
                 "C=2,M=2,H=5,W=5,R=3,S=3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["array"] == [3, 2] and out["preset"].startswith("tiny-")


def test_bad_setting_is_one_line_exit_2(capsys):
    assert main(["generate", "--set", "pe.psum_spad_depth=0"]) == 2
    err = capsys.readouterr().err
    assert err == ("ommatidia generate: error: PEConfig.psum_spad_depth must be at least 1, "
                   "not 0\n")
