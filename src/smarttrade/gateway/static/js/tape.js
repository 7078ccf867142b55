// The tape: trades newest first, buy (aggressor) green and sell red, a minimum-size filter.
// Rows are kept per symbol (bounded), so switching symbols shows their tape at once.
import { clock, el, price, qty } from "./format.js";

const KEEP = 300;
const BIG_FACTOR = 5; // a print this many times the median size is bold

export class Tape {
  constructor(table, minInput) {
    this.body = table.tBodies[0];
    this.minInput = minInput;
    this.trades = new Map(); // symbol -> newest-first array
    this.symbol = null;
    this.min = 0;
    minInput.addEventListener("input", () => {
      this.min = Number(minInput.value) || 0;
      this.render();
    });
  }

  clear(symbol) {
    this.trades.set(symbol, []);
    if (symbol === this.symbol) this.render();
  }

  // Trades as the API and the frames give them (oldest first).
  add(symbol, trades) {
    if (!trades?.length) return;
    const list = this.trades.get(symbol) ?? [];
    for (const t of trades) list.unshift(t);
    if (list.length > KEEP) list.length = KEEP;
    this.trades.set(symbol, list);
    if (symbol !== this.symbol) return;
    if (list.length === KEEP || this.body.rows.length === 0) {
      this.render();
      return;
    }
    const big = this.bigSize(list);
    const rows = trades.map((t) => this.row(t, big));
    this.body.prepend(...rows.reverse());
    while (this.body.rows.length > KEEP) this.body.deleteRow(-1);
  }

  bigSize(list) {
    const sizes = list.slice(0, 100).map((t) => t.volume).sort((a, b) => a - b);
    return sizes.length ? sizes[Math.floor(sizes.length / 2)] * BIG_FACTOR : Infinity;
  }

  row(t, big) {
    const side = t.side === "buy" ? "buy" : "sell";
    const cls = [side, t.volume >= big ? "big" : "", t.volume < this.min ? "hidden" : ""].join(" ").trim();
    return el("tr", { class: cls, "data-size": t.volume },
      el("td", { class: "l", text: clock(t.time, true) }),
      el("td", { text: price(this.symbol, t.price) }),
      el("td", { text: qty(t.volume) }),
      el("td", { class: "c", text: side === "buy" ? "B" : "S" }));
  }

  show(symbol) {
    this.symbol = symbol;
    this.render();
  }

  render() {
    const list = this.trades.get(this.symbol) ?? [];
    const big = this.bigSize(list);
    this.body.replaceChildren(...list.map((t) => this.row(t, big)));
  }
}
