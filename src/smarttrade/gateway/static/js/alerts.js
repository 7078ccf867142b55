// Price alerts (docs/alerts.md): create or replace one per symbol, list with state, delete,
// re-arm; the fired history from the API, and live "alert" frames prepended as they come.
import { api } from "./api.js";
import { clock, el, learnPrice, price } from "./format.js";

const KEEP_FIRED = 100;

export class Alerts {
  constructor(root) {
    this.form = root.querySelector("#alert-form");
    this.symbol = root.querySelector("#alert-symbol");
    this.type = root.querySelector("#alert-type");
    this.price = root.querySelector("#alert-price");
    this.trigger = root.querySelector("#alert-trigger");
    this.error = root.querySelector("#alert-error");
    this.list = root.querySelector("#alerts-list").tBodies[0];
    this.fired = root.querySelector("#alerts-fired");
    this.seen = new Set(); // fired records already listed (user, symbol, offset, type)
    this.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.create();
    });
    this.list.addEventListener("click", (ev) => {
      const b = ev.target.closest("button[data-act]");
      if (b) this.act(b.dataset.act, b.dataset.symbol);
    });
  }

  setSymbols(symbols) {
    this.symbol.replaceChildren(...symbols.map((s) => el("option", { value: s, text: s })));
  }

  focusFor(symbol, last) {
    this.symbol.value = symbol;
    if (last !== null && last !== undefined && !this.price.value) this.price.value = String(last);
    this.price.focus();
    this.price.select();
  }

  async create() {
    const symbol = this.symbol.value;
    const body = { price: Number(this.price.value), type: this.type.value };
    if (this.trigger.value !== "once") body.trigger = this.trigger.value;
    try {
      await api(`/api/me/alerts/${encodeURIComponent(symbol)}`, { method: "PUT", body });
      this.error.textContent = "";
      this.price.value = "";
      await this.refresh();
    } catch (exc) {
      this.error.textContent = exc.message;
    }
  }

  async act(what, symbol) {
    const path = `/api/me/alerts/${encodeURIComponent(symbol)}`;
    try {
      if (what === "delete") await api(path, { method: "DELETE" });
      else await api(path + "/rearm", { method: "POST" });
      this.error.textContent = "";
    } catch (exc) {
      this.error.textContent = exc.message;
    }
    await this.refresh();
  }

  async refresh() {
    try {
      const [list, fired] = await Promise.all([api("/api/me/alerts"), api("/api/me/alerts/fired")]);
      this.renderList(list.alerts ?? []);
      this.fired.replaceChildren();
      this.seen.clear();
      for (const rec of [...(fired.fired ?? [])].reverse()) this.addFired(rec, false);
    } catch (exc) {
      this.error.textContent = `alerts: ${exc.message}`;
    }
  }

  renderList(alerts) {
    this.list.replaceChildren(...alerts.map((a) => el("tr", { "data-symbol": a.symbol, "data-state": a.state },
      el("td", { class: "l", text: a.symbol }),
      el("td", { class: "l", text: `${a.type}${a.trigger === "every" ? " ↻" : ""}` }),
      el("td", { text: price(a.symbol, a.price) }),
      el("td", { class: `l state-${a.state}`, text: a.state }),
      el("td", {},
        a.state === "armed" ? "" : el("button", { type: "button", "data-act": "rearm", "data-symbol": a.symbol, text: "re-arm" }),
        el("button", { type: "button", "data-act": "delete", "data-symbol": a.symbol, "aria-label": `delete ${a.symbol} alert`, text: "×" })))));
  }

  // One fired record {user, symbol, price, trade_price, type, trigger, fired_at, offset}.
  addFired(rec, fresh) {
    const id = [rec.symbol, rec.offset, rec.type, rec.price].join("|");
    if (this.seen.has(id)) return;
    this.seen.add(id);
    learnPrice(rec.symbol, rec.trade_price);
    const text = `${clock(rec.fired_at)} ${rec.symbol} ${rec.type} ${price(rec.symbol, rec.price)} @ ${price(rec.symbol, rec.trade_price)}`;
    const li = el("li", { class: fresh ? "new" : undefined, "data-symbol": rec.symbol, text });
    this.fired.prepend(li);
    while (this.fired.children.length > KEEP_FIRED) this.fired.lastElementChild.remove();
  }

  // A live "alert" frame: the record is in .alert (docs/alerts.md), or the frame is the record.
  onFrame(frame) {
    const rec = frame.alert ?? frame;
    this.addFired(rec, true);
    this.refresh();
  }
}
