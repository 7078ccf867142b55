// The watchlist: latest quote per symbol and its change from the session's open; a roving
// tabindex keeps one row in the tab order, the selected one.
import { el, price, qty, signed } from "./format.js";

export class Watchlist {
  constructor(table, onSelect) {
    this.body = table.tBodies[0];
    this.onSelect = onSelect;
    this.rows = new Map();
    this.selected = null;
    this.body.addEventListener("click", (ev) => {
      const row = ev.target.closest("tr[data-symbol]");
      if (row) this.onSelect(row.dataset.symbol, true);
    });
    this.body.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") {
        const row = ev.target.closest("tr[data-symbol]");
        if (row) this.onSelect(row.dataset.symbol, true);
      }
    });
  }

  setSymbols(symbols) {
    this.body.replaceChildren();
    this.rows.clear();
    for (const s of symbols) {
      const cells = ["last", "chg", "pct", "bid", "ask", "vol"].map((k) => el("td", { class: k, text: "–" }));
      const row = el("tr", { "data-symbol": s, tabindex: "-1", "aria-selected": "false" },
        el("td", { class: "sym", text: s }), ...cells);
      this.rows.set(s, { row, last: null, cells: Object.fromEntries(cells.map((c) => [c.className, c])) });
      this.body.append(row);
    }
  }

  select(symbol, focus) {
    for (const [s, r] of this.rows) {
      const on = s === symbol;
      r.row.setAttribute("aria-selected", String(on));
      r.row.tabIndex = on ? 0 : -1;
      if (on && focus) r.row.focus();
    }
    this.selected = symbol;
  }

  neighbour(step) {
    const names = [...this.rows.keys()];
    const i = names.indexOf(this.selected);
    return names[Math.max(0, Math.min(names.length - 1, (i < 0 ? 0 : i) + step))];
  }

  update(symbol, quote, ref) {
    const r = this.rows.get(symbol);
    if (!r || !quote) return;
    const c = r.cells;
    const p = quote.price;
    if (r.last !== null && p !== r.last) {
      const cls = p > r.last ? "flash-up" : "flash-down";
      c.last.classList.remove("flash-up", "flash-down");
      void c.last.offsetWidth; // restart the animation
      c.last.classList.add(cls);
    }
    r.last = p;
    c.last.textContent = price(symbol, p);
    c.bid.textContent = price(symbol, quote.bid);
    c.ask.textContent = price(symbol, quote.ask);
    c.vol.textContent = qty(quote.volume);
    if (ref) {
      const d = p - ref;
      const dir = d > 0 ? "up" : d < 0 ? "down" : "";
      c.chg.textContent = signed(d, decimalsFor(symbol, p, ref));
      c.pct.textContent = signed((d / ref) * 100, 2) + "%";
      c.chg.className = "chg " + dir;
      c.pct.className = "pct " + dir;
    }
  }
}

function decimalsFor(symbol, a, b) {
  const text = price(symbol, Math.abs(a) > Math.abs(b) ? a : b);
  const dot = text.indexOf(".");
  return dot < 0 ? 0 : text.length - dot - 1;
}
