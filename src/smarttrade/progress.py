"""Progress bars and summaries for long work (replays, scans, backups, exports), in one place."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from smarttrade.ingest.deadletter import DeadLetters
from smarttrade.ingest.engine import Engine
from smarttrade.ingest.run import Feed, RunResult

Tick = Callable[..., None]  # tick(done, total=None)


class IngestProgress:
    """A bar (bytes or trades when the total is known) with trades/s, rejects, lag and batch."""

    def __init__(self, console: Console, title: str, total: int | None) -> None:
        self.console = console
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
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, engine: Engine, dead: DeadLetters, feed: Feed) -> None:
        st = engine.stats
        rate = st.trades / max(st.elapsed, 1e-9)
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


def summary(result: RunResult, dead_letter: str | None) -> Table:
    st = result.stats
    table = Table(title="ingest summary", show_header=False)
    table.add_column(justify="right")
    table.add_column()
    rows = [
        ("trades committed", f"{st.trades:,}"),
        ("cancels applied", f"{st.cancels:,}"),
        ("rejected", f"{result.rejected:,}"),
        ("skipped (instruments not tracked)", f"{result.skipped:,}"),
        ("already committed (resumed)", f"{st.resumed:,}"),
        ("commits", f"{st.commits:,} (max batch {st.max_batch:,} trades)"),
        ("elapsed", f"{st.elapsed:.2f} s ({st.trades / max(st.elapsed, 1e-9):,.0f} trades/s)"),
    ]
    if st.skipped_commits:
        rows.append(("commits already applied", f"{st.skipped_commits:,}"))
    if st.repaired or st.missed_cancels:
        rows.append(("corrupt keys replaced", f"{st.repaired:,}"))
        rows.append(("cancels with no trade left", f"{st.missed_cancels:,}"))
    if result.restarts:
        rows.append(("restarts from checkpoints", str(result.restarts)))
    for reason, count in sorted(result.reasons.items(), key=lambda kv: -kv[1])[:8]:
        rows.append((f"  rejected: {reason}", f"{count:,}"))
    if result.rejected and dead_letter:
        rows.append(("dead letters", dead_letter))
    for name, value in rows:
        table.add_row(name, value)
    return table


@contextmanager
def counting(console: Console, title: str, total: int | None = None, unit: str = "keys") -> Iterator[Tick]:
    """A bar (or a counter when the total is unknown) for scans, backups, exports and imports.

    Yields ``tick(done, total=None)``; transient, so only the command's result stays on screen.
    """
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
