"""Rich renderings shared by the CLI: the footprint ladder and the indicator table."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from smarttrade.analytics.views import BarView
from smarttrade.symbols import SymbolSpec, spec_for


def _local(epoch: float, spec: SymbolSpec) -> str:
    """A time in the instrument's zone (its session days)."""
    return datetime.fromtimestamp(epoch, spec.tz).strftime("%Y-%m-%d %H:%M:%S %Z")


def ladder(view: BarView, symbol: str) -> Group:
    spec = spec_for(symbol)
    f = view.fields
    head = Text(
        f"{symbol} {view.timeframe} bar {_local(view.start, spec)} ({f.get('session', '?')})  "
        f"O {f.get('open')} H {f.get('high')} L {f.get('low')} C {f.get('close')}  "
        f"volume {f.get('volume')}  delta {f.get('delta')}  cum delta {f.get('cum_delta')}",
        style="bold",
    )
    fp = view.footprint
    if fp is None:
        return Group(head, Text("  no footprint (expired)", style="dim"))
    table = Table(box=None, padding=(0, 1), show_edge=False)
    columns = [("", "left"), ("price", "right"), ("bid", "right"), ("x", "center"), ("ask", "right")]
    for name, justify in [*columns, ("delta", "right"), ("", "left")]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    stacked = {(lo, hi): side for side, lo, hi in fp.stacked}
    va_low, va_high = fp.value_area
    rows = list(zip(fp.levels.tolist(), fp.buy.tolist(), fp.sell.tolist(), fp.buy_imbalance.tolist(),
                    fp.sell_imbalance.tolist(), strict=True))  # fmt: skip
    for level, buy, sell, buy_imb, sell_imb in reversed(rows):
        in_va = va_low <= level <= va_high
        marker = "◆" if level == fp.poc else ("│" if in_va else " ")
        notes = []
        for (lo, hi), side in stacked.items():
            if lo <= level <= hi:
                notes.append(Text(f"stacked {side}", style="green" if side == "buy" else "red"))
        if level == fp.levels[-1] and fp.unfinished_high:
            notes.append(Text("unfinished high", style="yellow"))
        if level == fp.levels[0] and fp.unfinished_low:
            notes.append(Text("unfinished low", style="yellow"))
        delta = buy - sell
        q = spec.qty_text
        row_style = "bold reverse" if level == fp.poc else ("" if in_va else "dim")
        table.add_row(
            Text(marker, style="cyan"),
            spec.price_text(level),
            Text(q(sell), style="bold red" if sell_imb else ""),
            "x",
            Text(q(buy), style="bold green" if buy_imb else ""),
            Text(_signed(q(delta)), style="green" if delta > 0 else "red" if delta < 0 else ""),
            Text(" ").join(notes) if notes else "",
            style=row_style,
        )
    foot = Text(
        f"POC {spec.price_text(fp.poc)}  value area {spec.price_text(va_low)}-{spec.price_text(va_high)}  "
        f"delta {_signed(spec.qty_text(fp.delta))}  ◆ POC, │ value area, green/red: buy/sell imbalance",
        style="dim",
    )
    return Group(head, table, foot)


def _signed(text: str) -> str:
    return text if text.startswith("-") or text == "0" else f"+{text}"


def indicator_table(symbol: str, closed: dict[str, Any], peek: dict[str, dict[str, Any]]) -> Table:
    spec = spec_for(symbol)
    table = Table(title=f"{symbol} indicators")
    table.add_column("indicator", no_wrap=True)
    table.add_column("value", justify="right")
    table.add_column("period", justify="right")
    table.add_column("bar closed at", no_wrap=True)
    table.add_column("forming bar (peek)", justify="right")
    for name in sorted(closed):
        c = closed[name]
        tf = name.rsplit("_", 1)[-1] if "_" in name else ""
        base = name[: -len(tf) - 1] if tf in peek else name
        forming = peek.get(tf, {}).get(base)
        table.add_row(
            name,
            f"{c['value']:.6g}",
            "" if c.get("period") is None else str(c["period"]),
            _local(c["timestamp"], spec) if c.get("timestamp") else "",
            "" if forming is None else f"{forming:.6g}",
        )
    return table
