"""Study progress for people and for CI logs.

:func:`progress_callback` returns a ``progress(phase, done, total)`` callable for
:func:`xai_checks.study.run_study`: tqdm bars on a terminal; without one (a CI log), one plain
line per phase at its start and end and at most one every ``every`` seconds in between.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

__all__ = ["LineProgress", "progress_callback"]

Progress = Callable[[str, int, int], None]


class LineProgress:
    """Periodic plain lines: ``xai-checks: ratio 40/200 photos (20%), 31 s``."""

    def __init__(
        self,
        write: Callable[[str], None],
        *,
        every: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write
        self._every = every
        self._clock = clock
        self._start = clock()
        self._last: dict[str, float] = {}

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = self._clock()
        first = phase not in self._last
        finished = done >= total
        if not (first or finished or now - self._last[phase] >= self._every):
            return
        self._last[phase] = now
        unit = "photos" if phase == "ratio" else "steps"
        share = f" ({100 * done // total}%)" if total else ""
        self._write(f"xai-checks: {phase} {done}/{total} {unit}{share}, {now - self._start:.0f} s")


def _bars(stream: TextIO) -> Progress:
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def update(phase: str, done: int, total: int) -> None:
        bar = bars.get(phase)
        if bar is None:
            bar = bars[phase] = tqdm(
                total=total,
                desc=f"{phase:>9}",
                unit="img" if phase == "ratio" else "step",
                leave=True,
                file=stream,
            )
        bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update


def progress_callback(
    *, enabled: bool = True, stream: TextIO | None = None, every: float = 30.0
) -> Progress | None:
    """Bars on a terminal, periodic lines otherwise; ``None`` when disabled."""
    if not enabled:
        return None
    stream = stream or sys.stderr
    if stream.isatty():
        return _bars(stream)

    def write(line: str) -> None:
        print(line, file=stream, flush=True)

    return LineProgress(write, every=every)
