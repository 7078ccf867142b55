// Recent bars: candles with volume and the session VWAP on a canvas, and the same bars in a table
// (a row click picks the bar the footprint ladder shows).
import { el, hhmm, price, qty, signed } from "./format.js";

export class Bars {
  constructor(canvas, table, vwapLabel, onPick) {
    this.canvas = canvas;
    this.body = table.tBodies[0];
    this.vwapLabel = vwapLabel;
    this.onPick = onPick;
    this.symbol = null;
    this.bars = [];
    this.vwap = null;
    this.selected = -1;
    this.body.addEventListener("click", (ev) => {
      const row = ev.target.closest("tr[data-index]");
      if (row) this.onPick(Number(row.dataset.index));
    });
    canvas.addEventListener("click", (ev) => {
      if (!this.bars.length) return;
      const rect = canvas.getBoundingClientRect();
      const i = Math.floor(((ev.clientX - rect.left) / rect.width) * this.bars.length);
      this.onPick(Math.max(0, Math.min(this.bars.length - 1, i)));
    });
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  show(symbol, bars, selected, vwap) {
    this.symbol = symbol;
    this.bars = bars;
    this.selected = selected;
    this.vwap = vwap;
    this.vwapLabel.textContent = vwap === null ? "" : `VWAP ${price(symbol, vwap)}`;
    this.draw();
    this.table();
  }

  table() {
    const s = this.symbol;
    const rows = this.bars.map((b, i) => el("tr", { "data-index": i, class: i === this.selected ? "selected" : undefined },
      el("td", { class: "l", text: hhmm(b.start) + (b.closed ? "" : " •") }),
      el("td", { text: price(s, b.open) }), el("td", { text: price(s, b.high) }),
      el("td", { text: price(s, b.low) }), el("td", { text: price(s, b.close) }),
      el("td", { text: qty(b.volume) }),
      el("td", { class: b.delta > 0 ? "up" : b.delta < 0 ? "down" : "", text: signed(b.delta) }),
      el("td", { text: signed(b.cum_delta) })));
    this.body.replaceChildren(...rows.reverse());
  }

  draw() {
    const c = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth;
    const h = c.clientHeight || 170;
    if (!w) return;
    c.width = Math.round(w * dpr);
    c.height = Math.round(h * dpr);
    const g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const css = getComputedStyle(document.documentElement);
    const color = (name) => css.getPropertyValue(name).trim();
    const bars = this.bars.filter((b) => b.high !== null && b.low !== null);
    if (!bars.length) return;
    const lines = bars.map((b) => b.indicators?.vwap).filter((v) => Number.isFinite(v));
    const all = [...bars.flatMap((b) => [b.high, b.low]), ...lines, ...(this.vwap === null ? [] : [this.vwap])];
    let lo = Math.min(...all);
    let hi = Math.max(...all);
    if (hi === lo) { hi += 1; lo -= 1; }
    const axis = 58;
    const volH = 26;
    const top = 4;
    const plotH = h - volH - top - 4;
    const step = (w - axis) / this.bars.length;
    const y = (p) => top + ((hi - p) / (hi - lo)) * plotH;
    const maxVol = Math.max(...bars.map((b) => b.volume || 0), 1);
    g.font = "10px ui-monospace, monospace";
    g.fillStyle = color("--dim");
    g.textBaseline = "middle";
    for (const p of [hi, (hi + lo) / 2, lo]) g.fillText(price(this.symbol, p), w - axis + 4, y(p));
    this.bars.forEach((b, i) => {
      if (b.high === null) return;
      const x = i * step + step / 2;
      const up = b.close >= b.open;
      const col = up ? color("--buy") : color("--sell");
      if (i === this.selected) {
        g.fillStyle = color("--sel");
        g.fillRect(i * step, 0, step, h);
      }
      g.strokeStyle = col;
      g.beginPath();
      g.moveTo(x, y(b.high));
      g.lineTo(x, y(b.low));
      g.stroke();
      const bw = Math.max(1, step * 0.6);
      const yo = y(b.open);
      const yc = y(b.close);
      g.fillStyle = col;
      g.fillRect(x - bw / 2, Math.min(yo, yc), bw, Math.max(1, Math.abs(yc - yo)));
      const vh = ((b.volume || 0) / maxVol) * volH;
      g.globalAlpha = 0.45;
      g.fillRect(x - bw / 2, h - vh, bw, vh);
      g.globalAlpha = 1;
    });
    g.strokeStyle = color("--vwap");
    if (lines.length > 1) {
      g.beginPath();
      this.bars.forEach((b, i) => {
        const v = b.indicators?.vwap;
        if (!Number.isFinite(v)) return;
        const x = i * step + step / 2;
        i ? g.lineTo(x, y(v)) : g.moveTo(x, y(v));
      });
      g.stroke();
    }
    if (this.vwap !== null) {
      g.setLineDash([4, 3]);
      g.beginPath();
      g.moveTo(0, y(this.vwap));
      g.lineTo(w - axis, y(this.vwap));
      g.stroke();
      g.setLineDash([]);
      g.fillStyle = color("--vwap");
      g.fillText("VWAP", w - axis + 4, Math.min(h - volH, Math.max(8, y(this.vwap))));
    }
  }
}
