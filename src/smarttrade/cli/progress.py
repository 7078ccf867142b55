"""Progress bars and summaries for long work (replays, scans, backups, exports), in one place.

On a terminal a Rich bar redraws in place. Anywhere else (a pipe, a file, a journal) a bar would
arrive as one line cut to 80 columns at the end, so progress becomes a plain line, whole, logged
at the start and then every ``PLAIN_EVERY_S`` seconds, and once at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:  # types only: scans and backups need not load the ingest engine
    from smarttrade.ingest.deadletter import DeadLetters
    from smarttrade.ingest.engine import Engine
    from smarttrade.ingest.run import Feed


Tick = Callable[..., None]  # tick(done, total=None)
PLAIN_EVERY_S = 5.0  # seconds between two plain progress lines when not on a terminal


class PlainLog:
    """One whole line per ``every`` seconds (the first at once), for consoles that are not terminals."""

    def __init__(
        self, console: Console, title: str, at_once: bool = True, every: float = PLAIN_EVERY_S
    ) -> None:
        self.console = console
        self.title = title
        self.every = every
        self.started = time.monotonic()
        self._last: float | None = None if at_once else self.started
        self.logged = 0  # lines written so far
        self._pending: Callable[[], str] | None = None

    def line(self, text: Callable[[], str], force: bool = False) -> None:
        """Log ``text()`` when due (or ``force``); otherwise keep it for ``flush``."""
        now = time.monotonic()
        if force or self._last is None or now - self._last >= self.every:
            self._last = now
            self.logged += 1
            self._pending = None
            self.console.print(
                f"{self.title}: {text()}  {now - self.started:,.1f} s",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        else:
            self._pending = text

    def flush(self) -> None:
        """The latest state, if it was not logged yet: a run's last line is always its end."""
        if self._pending is not None:
            self.line(self._pending, force=True)


def _amount(done: float, total: float | None, unit: str) -> str:
    if total:
        return f"{done:,.0f} of {total:,.0f} {unit} ({done / total:.0%})"
    return f"{done:,.0f} {unit}"


class IngestProgress:
    """A bar (bytes or trades when the total is known) with trades/s, rejects, lag and batch."""

    def __init__(self, console: Console, title: str, total: int | None) -> None:
        self.console = console
        self.total = total
        self.plain = None if console.is_terminal else PlainLog(console, title)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.task: TaskID = self.progress.add_task(title, total=total, info="")
        self._waiting = ""

    def __enter__(self) -> IngestProgress:
        if self.plain is None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.plain is None:
            self.progress.stop()
        else:
            self.plain.flush()

    def update(self, engine: Engine, dead: DeadLetters, feed: Feed) -> None:
        st = engine.stats
        rate = st.trades / max(st.elapsed, 1e-9)
        if self.plain is not None:
            unit = "bytes" if hasattr(feed, "paths") else "trades"  # file feeds count bytes read
            self.plain.line(
                lambda: (
                    f"{_amount(feed.done, feed.total, unit)}, {st.trades:,} trades, {rate:,.0f}/s, "
                    f"{dead.count:,} rejected, lag {st.lag_ms:,.0f} ms, batch {st.last_batch:,}"
                )
            )
            return
        info = (
            f"{st.trades:>11,} trades {rate:>9,.0f}/s  {dead.count:,} rejected  "
            f"lag {st.lag_ms:,.0f} ms  batch {st.last_batch:,}"
        )
        self.progress.update(self.task, completed=feed.done, info=info)

    def wait(self, message: str) -> None:
        if message and message != self._waiting:
            self.console.print(f"[yellow]{message}[/]", highlight=False)
        elif not message and self._waiting:
            self.console.print("[green]Redis is back; ingest resumed[/]")
        self._waiting = message


@contextmanager
def counting(console: Console, title: str, total: int | None = None, unit: str = "keys") -> Iterator[Tick]:
    """A bar (or a counter when the total is unknown) for scans, backups, exports and imports.

    Yields ``tick(done, total=None)``; transient on a terminal, so only the command's result stays
    on screen; elsewhere a plain line every few seconds (a short job logs none).
    """
    if not console.is_terminal:
        log = PlainLog(console, title, at_once=False)

        def plain_tick(done: int, new_total: int | None = None) -> None:
            nonlocal total
            total = total if new_total is None else new_total
            log.line(lambda: _amount(done, total, unit))

        yield plain_tick
        if log.logged:  # a job long enough to have logged also logs where it ended
            log.flush()
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.completed:,.0f} " + unit),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    task = progress.add_task(title, total=total)

    def tick(done: int, new_total: int | None = None) -> None:
        if new_total is not None:
            progress.update(task, total=new_total)
        progress.update(task, completed=done)

    with progress:
        yield tick
