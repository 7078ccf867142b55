// The footprint ladder of one bar: bid x ask per price level (high to low), delta, a volume bar;
// the POC and value area highlighted, diagonal imbalances and stacked zones marked.
//
// The metrics (POC, value area, imbalances, stacked zones) are the API's (/api/bars, computed by
// analytics/footprint.py); the page never recomputes them. While the newest bar is shown, the
// live "footprint" frames add their per-level volumes to it between two fetches of the metrics.
import { el, price, qty, signed } from "./format.js";

const key = (p) => p.toFixed(8);

export class Ladder {
  constructor(table, summary, label) {
    this.body = table.tBodies[0];
    this.summary = summary;
    this.label = label;
    this.symbol = null;
    this.bar = null; // the API's bar
    this.levels = new Map(); // key(price) -> {price, bid, ask, buyImb, sellImb}
    this.live = false;
    this.last = null;
  }

  show(symbol, bar, { live, position }) {
    const other = symbol !== this.symbol || bar?.start !== this.bar?.start;
    this.symbol = symbol;
    this.bar = bar;
    this.live = live;
    this.levels.clear();
    for (const lv of bar?.footprint?.levels ?? []) {
      this.levels.set(key(lv.price), {
        price: lv.price, bid: lv.bid, ask: lv.ask, buyImb: lv.buy_imbalance, sellImb: lv.sell_imbalance,
      });
    }
    this.label.textContent = position;
    this.render();
    if (other) this.centre(this.body.querySelector("tr.poc")); // a new bar: its POC in view
  }

  centre(row) {
    const box = this.body.closest(".scroll");
    if (!row || !box) return;
    const at = row.getBoundingClientRect().top - box.getBoundingClientRect().top + box.scrollTop;
    box.scrollTop = Math.max(0, at - box.clientHeight / 2);
  }

  // Per-level volumes of one commit, in prices: [{price, buy, sell}].
  apply(deltas) {
    if (!this.live || !this.bar) return;
    for (const d of deltas) {
      const k = key(d.price);
      const lv = this.levels.get(k) ?? { price: d.price, bid: 0, ask: 0, buyImb: false, sellImb: false };
      lv.ask += d.buy;
      lv.bid += d.sell;
      this.levels.set(k, lv);
    }
    if (!this.due) this.due = requestAnimationFrame(() => { this.due = 0; this.render(); }); // one redraw a frame
  }

  lastPrice(p) {
    this.last = p;
  }

  render() {
    if (this.due) cancelAnimationFrame(this.due);
    this.due = 0;
    const fp = this.bar?.footprint;
    const sym = this.symbol;
    const levels = [...this.levels.values()].sort((a, b) => b.price - a.price);
    if (!levels.length) {
      this.summary.textContent = this.bar ? "no footprint for this bar" : "no bars yet";
      this.body.replaceChildren();
      return;
    }
    const max = Math.max(...levels.map((l) => l.bid + l.ask), 1);
    const [vaLo, vaHi] = fp?.value_area ?? [NaN, NaN];
    const zones = fp?.stacked ?? [];
    const eps = 1e-9;
    const rows = levels.map((lv) => {
      const total = lv.bid + lv.ask;
      const isPoc = fp && Math.abs(lv.price - fp.poc) < eps;
      const inVa = lv.price >= vaLo - eps && lv.price <= vaHi + eps;
      const zone = zones.find(([, lo, hi]) => lv.price >= lo - eps && lv.price <= hi + eps);
      const isLast = this.last !== null && Math.abs(lv.price - this.last) < eps;
      const cls = [isPoc ? "poc" : "", inVa ? "va" : "", isLast ? "last" : "", total ? "" : "empty"];
      const delta = lv.ask - lv.bid;
      const w = (v) => `${((v / max) * 100).toFixed(1)}%`;
      return el("tr", { class: cls.join(" ").trim() || undefined, "data-price": lv.price },
        el("td", { class: "z" + (zone ? " zs-" + zone[0] : ""), title: zone ? `stacked ${zone[0]} imbalance` : undefined }),
        el("td", { class: "bid" + (lv.sellImb ? " imb" : ""), text: total ? qty(lv.bid) : "" }),
        el("td", { class: "px", text: price(sym, lv.price) }),
        el("td", { class: "ask" + (lv.buyImb ? " imb" : ""), text: total ? qty(lv.ask) : "" }),
        el("td", { class: delta > 0 ? "up" : delta < 0 ? "down" : "", text: total ? signed(delta) : "" }),
        el("td", { class: "volbar" },
          el("span", { class: "vs", style: `width:${w(lv.bid)}` }),
          el("span", { class: "vb", style: `width:${w(lv.ask)}` })));
    });
    this.body.replaceChildren(...rows);
    const b = this.bar;
    const parts = [
      ["O", price(sym, b.open)], ["H", price(sym, b.high)], ["L", price(sym, b.low)], ["C", price(sym, b.close)],
      ["vol", qty(b.volume)], ["Δ", signed(b.delta)],
    ];
    if (fp) {
      parts.push(["POC", price(sym, fp.poc)], ["VA", `${price(sym, vaLo)}–${price(sym, vaHi)}`]);
      for (const [side, lo, hi] of zones) parts.push([`stacked ${side}`, `${price(sym, lo)}–${price(sym, hi)}`]);
      if (fp.unfinished_high) parts.push(["unfinished", "high"]);
      if (fp.unfinished_low) parts.push(["unfinished", "low"]);
    }
    this.summary.replaceChildren(...parts.flatMap(([k, v]) => [k + " ", el("b", { text: v }), "  "]));
    this.summary.dataset.poc = fp ? String(fp.poc) : "";
  }
}
