"""Progress of long work: bars on standard error while a simulation or a build runs,
and the lines a simulator writes into its log as it goes.

`progress` draws a tqdm bar only on a terminal and not when asked to be quiet, so
logs, pipes and tests see nothing of it; `echo` prints a line without tearing a bar;
`LogFollower` hands each new line of a growing log file to a callable, from a thread,
while the simulator runs (`ommatidia.sim.accelerator.run_layers`).
"""

from __future__ import annotations

import contextlib
import pathlib
import sys
import threading

from tqdm import tqdm

__all__ = ["enabled", "progress", "echo", "LogFollower"]

TICK_SECONDS = 1.0
"""How often a bar is redrawn when nothing counts, so that its elapsed time moves."""


def enabled(stream=None, quiet: bool = False) -> bool:
    """Whether bars go to ``stream`` (default: standard error): it is a terminal and
    not ``quiet``."""
    stream = sys.stderr if stream is None else stream
    try:
        return not quiet and bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


@contextlib.contextmanager
def progress(total: int | None = None, *, desc: str, unit: str = "it", quiet: bool = False,
             stream=None, elapsed_only: bool = False, tick: float = TICK_SECONDS):
    """A tqdm bar on ``stream`` (default: standard error) for the ``with`` block, removed
    at its end; a disabled bar (its ``update`` does nothing) unless `enabled`.

    ``total`` None counts without an end (cycles so far and their rate);
    ``elapsed_only`` shows ``desc`` and the elapsed time, for a wait with nothing to
    count. A thread redraws the bar every ``tick`` seconds, so the time moves between
    updates.
    """
    stream = sys.stderr if stream is None else stream
    on = enabled(stream, quiet)
    bar = tqdm(total=total, desc=desc, unit=unit, file=stream, disable=not on, leave=False,
               dynamic_ncols=True, unit_scale=total is None and not elapsed_only,
               bar_format="{desc} {elapsed}" if elapsed_only else None)
    stop = threading.Event()
    ticker = None
    if on:
        def redraw():
            while not stop.wait(tick):
                bar.refresh()
        ticker = threading.Thread(target=redraw, name="progress-tick", daemon=True)
        ticker.start()
    try:
        yield bar
    finally:
        stop.set()
        if ticker is not None:
            ticker.join()
        bar.close()


def echo(text: str, file=None) -> None:
    """Print ``text`` as a line of ``file`` (default: standard output), clearing the bars
    first and drawing them again after, and flush."""
    file = sys.stdout if file is None else file
    tqdm.write(text, file=file)
    file.flush()


class LogFollower:
    """Calls ``on_line(line)`` for each complete new line of the file ``path`` (which may
    not exist yet, and starts over when it is truncated), every ``interval`` seconds
    from a thread, between `start` and `stop`; `stop` reads what is left first.

    Use it as a context manager around the work that writes the log.
    """

    def __init__(self, path, on_line, interval: float = 0.5):
        self.path, self.on_line, self.interval = pathlib.Path(path), on_line, interval
        self._offset, self._partial = 0, b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="log-follower", daemon=True)

    def _read(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(0, 2)
                if f.tell() < self._offset:  # truncated: a new run writes it again
                    self._offset, self._partial = 0, b""
                f.seek(self._offset)
                data = f.read()
        except OSError:  # not written yet
            return
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            self.on_line(line.decode(errors="replace"))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._read()

    def start(self) -> "LogFollower":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._read()

    def __enter__(self) -> "LogFollower":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
