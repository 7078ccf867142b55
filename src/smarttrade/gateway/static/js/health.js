// The health strip: /api/dashboard/health, polled; each figure coloured by the runbook's level.
import { api } from "./api.js";
import { bytes } from "./format.js";

const POLL_MS = 5000;

export class Health {
  constructor(strip) {
    this.cells = Object.fromEntries([...strip.querySelectorAll("[data-k]")].map((n) => [n.dataset.k, n]));
  }

  set(k, text, level, title) {
    const n = this.cells[k];
    n.querySelector("i").textContent = text;
    n.className = "h " + (level || "");
    n.title = title || "";
  }

  async poll() {
    try {
      this.render(await api("/api/dashboard/health"));
    } catch (exc) {
      this.set("redis", "?", "down", `health not available: ${exc.message}`);
    }
  }

  start() {
    this.poll();
    setInterval(() => this.poll(), POLL_MS);
  }

  render(h) {
    if (!h.redis_up) {
      this.set("redis", "down", "down", h.error);
      return;
    }
    const checks = Object.fromEntries(h.checks.map((c) => [c.check, c]));
    const lvl = (name) => checks[name]?.level;
    const msg = (name) => checks[name]?.message;
    this.set("redis", "up", "ok");
    const max = h.maxmemory ? ` / ${bytes(h.maxmemory)}` : "";
    this.set("mem", bytes(h.used_memory) + max, lvl("memory"), msg("memory"));
    this.set("ops", h.ops_s === null ? "–" : Math.round(h.ops_s).toLocaleString("en"), lvl("ops"), msg("ops"));
    this.set("clients", String(h.clients), lvl("connections"), msg("connections"));
    this.set("hit", h.hit_rate === null ? "n/a" : (h.hit_rate * 100).toFixed(1) + "%", lvl("hit_rate"), msg("hit_rate"));
    const bad = h.checks.filter((c) => c.level !== "ok");
    this.set("alerts", bad.length ? bad.map((c) => `${c.check}:${c.level}`).join(" ") : "ok", h.alert_level,
      h.checks.map((c) => `${c.check}: ${c.message}`).join("\n"));
    const lag = h.ingest_lag_ms;
    const who = h.ingesters.map((i) => `${i.source}: ${i.lag_ms.toFixed(0)} ms, ${i.trades} trades`).join("\n");
    this.set("lag", lag === null ? "no ingester" : `${lag.toFixed(0)} ms`, lag === null ? "warning" : lag > 2000 ? "warning" : "ok", who);
  }
}
