"""B3's public trade file (semicolons, comma decimals, no aggressor side). Instruments without a
spec (options, stocks...) are skipped and counted.

Columns: DataReferencia;CodigoInstrumento;AcaoAtualizacao;PrecoNegocio;QuantidadeNegociada;
HoraFechamento;CodigoIdentificadorNegocio;TipoSessaoPregao;DataNegocio;
CodigoParticipanteComprador;CodigoParticipanteVendedor

HoraFechamento is HHMMSSmmm in America/Sao_Paulo (8 digits before 10:00). AcaoAtualizacao 0 is a
new trade, 2 cancels the earlier trade with the same CodigoIdentificadorNegocio.
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from smarttrade.feeds.files import Line, LineParser
from smarttrade.feeds.record import (
    UNKNOWN,
    BadRecord,
    TradeRecord,
    digits,
    known_symbol,
    price_units,
    qty_units,
    symbol_spec,
)

COLUMNS = (
    "DataReferencia",
    "CodigoInstrumento",
    "AcaoAtualizacao",
    "PrecoNegocio",
    "QuantidadeNegociada",
    "HoraFechamento",
    "CodigoIdentificadorNegocio",
    "TipoSessaoPregao",
    "DataNegocio",
    "CodigoParticipanteComprador",
    "CodigoParticipanteVendedor",
)
NEW, CANCEL = "0", "2"
B3_TZ = ZoneInfo("America/Sao_Paulo")


class B3Parser(LineParser):
    name = "b3"

    def __init__(self, tz: ZoneInfo = B3_TZ, only: set[str] | None = None) -> None:
        self.tz = tz
        self.only = only  # instruments to keep; others are skipped, not rejected
        self.skipped = 0
        self._midnight: dict[str, int] = {}

    def _day_start_us(self, text: str) -> int:
        start = self._midnight.get(text)
        if start is None:
            try:
                day = date.fromisoformat(text)
            except ValueError:
                raise BadRecord(f"DataNegocio: {text[:20]!r} is not YYYY-MM-DD") from None
            moment = datetime(day.year, day.month, day.day, tzinfo=self.tz)
            start = self._midnight[text] = int(moment.timestamp()) * 10**6
        return start

    def parse(self, text: str, line: Line) -> TradeRecord | None:
        cells = text.lstrip("\ufeff").split(";")
        if cells[0] == COLUMNS[0]:
            return None  # header
        if len(cells) != len(COLUMNS):
            raise BadRecord(f"{len(cells)} fields; the B3 layout has {len(COLUMNS)}")
        symbol = cells[1].strip()
        if self.only is not None and symbol not in self.only:
            self.skipped += 1
            return None
        if not known_symbol(symbol):
            # B3 files hold every instrument of the market; those we do not track are skipped
            # and counted, not dead-lettered
            self.skipped += 1
            return None
        action = cells[2].strip()
        if action not in (NEW, CANCEL):
            raise BadRecord(f"AcaoAtualizacao: {action[:10]!r} is neither 0 (new) nor 2 (cancel)")
        spec = symbol_spec(symbol)
        hhmmss = cells[5].strip()
        if not digits(hhmmss) or len(hhmmss) not in (8, 9):
            raise BadRecord(f"HoraFechamento: {hhmmss[:20]!r} is not HHMMSSmmm")
        hhmmss = hhmmss.zfill(9)
        h, m, s, ms = int(hhmmss[:2]), int(hhmmss[2:4]), int(hhmmss[4:6]), int(hhmmss[6:])
        if h > 23 or m > 59 or s > 59:
            raise BadRecord(f"HoraFechamento: {cells[5].strip()} is not a time of day")
        # Whole-day offsets are exact: B3 has had no DST since 2019; earlier dates use the zone's
        # offset at midnight, which is right outside the two DST switch days.
        time_us = self._day_start_us(cells[8].strip()) + ((h * 60 + m) * 60 + s) * 10**6 + ms * 1000
        trade_id = cells[6].strip()
        if not trade_id or not trade_id.isascii() or "," in trade_id:
            raise BadRecord("CodigoIdentificadorNegocio: missing or not an id")
        trade_id = f"{cells[8].strip()}/{trade_id}"  # B3 numbers trades afresh every day
        return TradeRecord(
            symbol=symbol,
            price=price_units(spec, cells[3], "PrecoNegocio", comma=True),
            qty=qty_units(spec, cells[4], "QuantidadeNegociada", comma=True),
            side=UNKNOWN,
            time_us=time_us,
            trade_id=trade_id[:64],
            cancel=action == CANCEL,
        )
