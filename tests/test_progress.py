"""Progress bars (`ommatidia.sim.progress`): drawn on a terminal only, never with --quiet,
never into pipes, files or tests; the log follower hands over complete lines as a file
grows."""

import io
import threading

import pytest

from ommatidia.sim import progress as pg


class FakeTTY(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self):
        return True


def test_silent_when_not_a_terminal():
    stream = io.StringIO()
    assert not pg.enabled(stream)
    with pg.progress(10, desc="layer 0", unit=" images", stream=stream) as bar:
        bar.update(4)
    with pg.progress(desc="building", elapsed_only=True, stream=stream, tick=0.01):
        threading.Event().wait(0.05)
    assert stream.getvalue() == ""


def test_bar_on_a_terminal():
    tty = FakeTTY()
    assert pg.enabled(tty)
    with pg.progress(10, desc="layer 0", unit=" images", stream=tty) as bar:
        bar.update(4)
        bar.refresh()
        drawn = tty.getvalue()
    assert "layer 0" in drawn and "4/10" in drawn and "40%" in drawn, drawn
    assert tty.getvalue().endswith("\r"), "the bar is cleared at the end (leave=False)"


def test_quiet_on_a_terminal():
    tty = FakeTTY()
    assert not pg.enabled(tty, quiet=True)
    with pg.progress(10, desc="layer 0", stream=tty, quiet=True) as bar:
        bar.update(4)
    assert tty.getvalue() == ""


def test_counter_and_elapsed_time_on_a_terminal():
    """Without a total the bar counts cycles with SI prefixes; an elapsed-only bar is
    redrawn by its thread although nothing updates it."""
    tty = FakeTTY()
    with pg.progress(desc="simulating", unit=" cycles", stream=tty) as bar:
        bar.update(2_000_000)
        bar.refresh()
    assert "simulating" in tty.getvalue() and "2.00M cycles" in tty.getvalue(), tty.getvalue()
    tty = FakeTTY()
    with pg.progress(desc="building ulx3s", elapsed_only=True, stream=tty, tick=0.01):
        threading.Event().wait(0.2)
    assert tty.getvalue().count("building ulx3s 00:00") >= 3, tty.getvalue()


def test_closed_or_odd_streams_are_not_terminals():
    closed = io.StringIO()
    closed.close()  # its isatty raises ValueError
    assert not pg.enabled(closed)
    assert not pg.enabled(object())


def test_log_follower_hands_over_complete_lines(tmp_path):
    path = tmp_path / "test.log"
    lines = []
    follower = pg.LogFollower(path, lines.append, interval=0.01)
    follower._read()  # no file yet
    path.write_bytes(b"first\nsec")
    follower._read()
    assert lines == ["first"]
    with open(path, "ab") as f:
        f.write(b"ond\nthird\n")
    follower._read()
    assert lines == ["first", "second", "third"]
    path.write_bytes(b"again\n")  # truncated and written anew
    follower._read()
    assert lines[3:] == ["again"]


def test_log_follower_thread_reads_the_rest_on_stop(tmp_path):
    path = tmp_path / "test.log"
    lines = []
    with pg.LogFollower(path, lines.append, interval=0.01):
        for k in range(5):
            with open(path, "a") as f:
                f.write(f"{k:,} cycles\n")
            threading.Event().wait(0.02)
        with open(path, "a") as f:
            f.write("last\n")
    assert lines == [f"{k:,} cycles" for k in range(5)] + ["last"]


@pytest.mark.parametrize("line, call", [
    (" 34640.00ns INFO     cocotb.system     2,049 cycles, 140,219 cycles/s", (0, 2049)),
    (" 98.00ns INFO     cocotb.system     job 1/3: status 2, 29836 cycles", (1, 29836)),
    (" 0.00ns INFO     cocotb.regression     Running tests", None),
])
def test_testbench_log_lines(line, call):
    """The lines `ommatidia.sim.tb.tb_system` logs, as `run_layers` reads them."""
    from ommatidia.sim.accelerator import _watcher
    calls = []
    _watcher(lambda *a: calls.append(a))(line)
    assert calls == ([call] if call else [])


def test_echo_clears_and_redraws_a_bar(capsys):
    tty = FakeTTY()
    with pg.progress(10, desc="layer 1", stream=tty) as bar:
        bar.update(3)
        bar.refresh()
        before = len(tty.getvalue())
        pg.echo("a line", file=tty)
        after = tty.getvalue()[before:]
    assert "a line\n" in after and after.index("a line") < after.rindex("layer 1"), after
    pg.echo("to stdout")
    assert capsys.readouterr().out == "to stdout\n"
