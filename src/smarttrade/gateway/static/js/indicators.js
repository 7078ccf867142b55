// Indicator values of the selected symbol: one row per indicator, one column per timeframe
// (closed bars' values from the calculations store; the forming bar's peek in the "now" column).
import { el, value } from "./format.js";

const ORDER = ["rsi_14", "sma_20", "ema_20", "macd", "macd_signal", "macd_hist", "bb_upper", "bb_middle", "bb_lower", "atr_14"];

export class Indicators {
  constructor(table) {
    this.table = table;
  }

  show(data, timeframes) {
    const closed = data?.closed ?? {};
    const forming = data?.forming ?? {};
    const head = this.table.tHead.rows[0];
    head.replaceChildren(el("th", { class: "l", text: "name" }),
      ...timeframes.map((tf) => el("th", { text: tf })), el("th", { text: `now ${timeframes[0] ?? ""}` }));
    const rows = [];
    for (const single of ["rsi", "vwap"]) {
      if (!closed[single]) continue;
      rows.push(el("tr", { "data-name": single }, el("td", { class: "l", text: single }),
        el("td", { class: "value", text: value(closed[single].value) }),
        ...timeframes.map(() => el("td", { class: "na" }))));
    }
    const seen = new Set(Object.keys(closed).map((k) => k.replace(/_[0-9]+[smhd]$/, "")));
    const names = [...ORDER.filter((n) => seen.has(n)), ...[...seen].filter((n) => !ORDER.includes(n) && n !== "rsi" && n !== "vwap")];
    for (const name of names) {
      const cells = timeframes.map((tf) => {
        const v = closed[`${name}_${tf}`]?.value;
        return el("td", { class: Number.isFinite(v) ? "value" : "na", text: value(v) });
      });
      const now = forming[timeframes[0]]?.[name];
      rows.push(el("tr", { "data-name": name }, el("td", { class: "l", text: name }), ...cells,
        el("td", { class: Number.isFinite(now) ? "value" : "na", text: value(now) })));
    }
    this.table.tBodies[0].replaceChildren(...rows);
  }
}
