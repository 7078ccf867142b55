// The dashboard's wiring: loads each panel over HTTP, then keeps it live from the WebSocket.
// Which data comes from where is in docs/dashboard.md.
import { Alerts } from "./alerts.js";
import { api, token, tokenUser, wsUrl } from "./api.js";
import { Bars } from "./bars.js";
import { hhmm, learnPrice } from "./format.js";
import { Health } from "./health.js";
import { Indicators } from "./indicators.js";
import { installKeys } from "./keys.js";
import { Ladder } from "./ladder.js";
import { LiveSocket } from "./socket.js";
import { Tape } from "./tape.js";
import { Theme } from "./theme.js";
import { Watchlist } from "./watchlist.js";

const DEFAULT_SYMBOLS = ["DOL", "WDO", "WIN"];
const CHANNELS = ["quotes", "trades", "footprint", "bars", "indicators", "alerts"];
const BAR_COUNT = 40;
const TAPE_SECONDS = 30;
const REFRESH_MS = 5000; // bars (metrics) and indicators of the selected symbol
const REF_REFRESH_MS = 60000; // the session opens the change is measured from
const $ = (id) => document.getElementById(id);

const state = {
  symbols: [],
  selected: null,
  quotes: new Map(),
  refs: new Map(), // symbol -> the session's first open (the change's reference)
  timeframes: ["1m", "5m", "15m"],
  tf: "1m",
  bars: [], // the selected symbol's bars (oldest first)
  barsOf: "", // "SYMBOL TF" the bars were loaded for: frames only extend a loaded list
  barIndex: -1, // -1: the newest bar, followed live
  indicators: null,
  forming: {},
  reloads: {}, // symbol -> how many times its state was reloaded (history lost)
  acks: [], // the gateway's "subscribed" answers, newest last (recovered, replayed), bounded
};

const watchlist = new Watchlist($("watchlist"), (s, focus) => select(s, focus));
const tape = new Tape($("tape"), $("tape-min"));
const ladder = new Ladder($("ladder"), $("ladder-summary"), $("ladder-bar"));
const bars = new Bars($("bars-chart"), $("bars-table"), $("bars-vwap"), (i) => pickBar(i));
const indicators = new Indicators($("indicators"));
const alerts = new Alerts(document.querySelector(".alerts"));
const health = new Health($("health"));
const theme = new Theme($("theme-toggle"));

// -- numbers from the API and frames ------------------------------------------------------------

const NUMERIC = ["open", "high", "low", "close", "volume", "buy", "sell", "delta", "cum_delta", "trades", "start"];

// A bar as the API gives it, also from a frame's raw hash fields (strings).
function normalBar(b) {
  const out = { ...b, indicators: { ...(b.indicators ?? {}) } };
  for (const k of NUMERIC) if (typeof out[k] === "string") out[k] = Number(out[k]);
  if (typeof out.closed === "string") out.closed = out.closed === "1";
  for (const [k, v] of Object.entries(b)) {
    if (!NUMERIC.includes(k) && typeof v === "string" && /^-?[0-9.]+(e-?[0-9]+)?$/.test(v) && k !== "session") {
      out.indicators[k] = Number(v);
      delete out[k];
    }
  }
  return out;
}

const tfSeconds = (tf) => Number(tf.slice(0, -1)) * { s: 1, m: 60, h: 3600, d: 86400 }[tf.slice(-1)];

// -- loading -------------------------------------------------------------------------------------

async function loadQuotes() {
  const data = await api(`/api/quotes?symbols=${state.symbols.join(",")}`);
  for (const [s, q] of Object.entries(data.quotes)) if (q) onQuote(s, q);
}

async function loadRefs() {
  const tf = state.timeframes[state.timeframes.length - 1];
  await Promise.all(state.symbols.map(async (s) => {
    try {
      const data = await api(`/api/bars/${s}?timeframe=${tf}&count=100`);
      const list = data.bars;
      if (!list.length) return;
      const session = list[list.length - 1].session;
      const first = list.find((b) => b.session === session) ?? list[0];
      state.refs.set(s, first.open);
      const q = state.quotes.get(s);
      if (q) watchlist.update(s, q, first.open);
    } catch { /* the change stays blank until the next round */ }
  }));
}

async function loadTape(symbol) {
  const since = Date.now() / 1000 - TAPE_SECONDS;
  const data = await api(`/api/trades/${symbol}?since=${since.toFixed(3)}&limit=1000`);
  tape.clear(symbol);
  const trades = data.entries.flatMap((e) => e.trades);
  tape.add(symbol, trades.slice(-300));
}

async function loadBars(symbol) {
  const data = await api(`/api/bars/${symbol}?timeframe=${state.tf}&count=${BAR_COUNT}`);
  if (symbol !== state.selected || data.timeframe !== state.tf) return; // the selection moved on
  state.bars = data.bars.map(normalBar);
  state.barsOf = `${symbol} ${data.timeframe}`;
  renderBars();
}

async function loadIndicators(symbol) {
  const data = await api(`/api/indicators/${symbol}`);
  if (symbol !== state.selected) return;
  state.indicators = data;
  state.forming = data.forming ?? {};
  const seen = new Set(Object.keys(data.closed).map((k) => k.match(/_([0-9]+[smhd])$/)?.[1]).filter(Boolean));
  if (seen.size) state.timeframes = [...seen].sort((a, b) => tfSeconds(a) - tfSeconds(b));
  renderIndicators();
  renderBars();
}

function renderIndicators() {
  indicators.show({ closed: state.indicators?.closed ?? {}, forming: state.forming }, state.timeframes);
}

function renderBars() {
  const list = state.bars;
  const i = state.barIndex < 0 || state.barIndex >= list.length ? list.length - 1 : state.barIndex;
  const vwap = state.indicators?.closed?.vwap?.value ?? null;
  bars.show(state.selected, list, i, vwap);
  const bar = list[i] ?? null;
  const live = i === list.length - 1;
  const position = bar ? `${hhmm(bar.start)} ${state.tf}${live ? " live" : ` ${i - list.length + 1}`}` : "–";
  ladder.show(state.selected, bar, { live, position });
}

function tfOptions() {
  const sel = $("ladder-tf");
  sel.replaceChildren(...state.timeframes.map((tf) => new Option(tf, tf, false, tf === state.tf)));
}

async function reloadSymbol(symbol) {
  state.reloads[symbol] = (state.reloads[symbol] ?? 0) + 1;
  const jobs = [loadTape(symbol)];
  if (symbol === state.selected) jobs.push(loadBars(symbol), loadIndicators(symbol));
  jobs.push(api(`/api/quotes/${symbol}`).then((q) => onQuote(symbol, q)).catch(() => {}));
  await Promise.allSettled(jobs);
}

async function select(symbol, focus = false) {
  if (!symbol) return;
  const changed = symbol !== state.selected;
  state.selected = symbol;
  watchlist.select(symbol, focus);
  for (const id of ["ladder-sym", "tape-sym", "bars-sym", "ind-sym"]) $(id).textContent = symbol;
  if (!changed) return;
  state.bars = [];
  state.barsOf = "";
  state.barIndex = -1;
  tape.show(symbol);
  ladder.lastPrice(state.quotes.get(symbol)?.price ?? null);
  renderBars();
  await Promise.allSettled([loadTape(symbol), loadBars(symbol), loadIndicators(symbol)]);
}

function pickBar(i) {
  state.barIndex = i >= state.bars.length - 1 ? -1 : i;
  renderBars();
}

function stepBar(step) {
  const n = state.bars.length;
  if (!n) return;
  const cur = state.barIndex < 0 ? n - 1 : state.barIndex;
  pickBar(Math.max(0, Math.min(n - 1, cur + step)));
}

// -- live frames ---------------------------------------------------------------------------------

function onQuote(symbol, q) {
  learnPrice(symbol, q.price);
  state.quotes.set(symbol, q);
  watchlist.update(symbol, q, state.refs.get(symbol));
  if (symbol === state.selected) ladder.lastPrice(q.price);
}

let barsDue = null;
function barsSoon() {
  if (!barsDue) barsDue = setTimeout(() => { barsDue = null; loadBars(state.selected).catch(() => {}); }, 300);
}

function onBar(symbol, tf, raw) {
  if (state.barsOf !== `${symbol} ${tf}` || !raw) return; // not what is shown, or not loaded yet
  const bar = normalBar(raw);
  const list = state.bars;
  const at = list.findIndex((b) => b.start === bar.start);
  if (at >= 0) list[at] = bar;
  else if (!list.length || bar.start > list[list.length - 1].start) {
    list.push(bar);
    if (list.length > BAR_COUNT) {
      list.shift();
      if (state.barIndex > 0) state.barIndex -= 1;
    }
  } else return;
  renderBars();
}

const handlers = {
  quote(f) {
    if (f.quote) onQuote(f.symbol, f.quote);
  },
  trades(f) {
    if (f.newEpoch) reloadSymbol(f.symbol); // the stores started over: what is shown is stale
    for (const t of f.trades) learnPrice(f.symbol, t.price);
    tape.add(f.symbol, f.trades);
    if (f.symbol !== state.selected || !f.trades.length) return;
    const newest = f.trades[f.trades.length - 1].time;
    const last = state.bars[state.bars.length - 1];
    if (last && newest >= last.start + tfSeconds(state.tf)) barsSoon(); // a new bar began
  },
  footprint(f) {
    if (f.symbol === state.selected) ladder.apply(f.levels);
  },
  bar(f) {
    onBar(f.symbol, f.timeframe, f.bar);
  },
  indicators(f) {
    if (f.symbol !== state.selected) return;
    state.forming = f.values ?? {};
    renderIndicators();
  },
  alert(f) {
    alerts.onFrame(f);
  },
  snapshot(f) {
    if (f.quote) onQuote(f.symbol, f.quote);
    if (f.recovered === false) reloadSymbol(f.symbol); // history lost: this symbol starts over
  },
  subscribed(f) {
    state.acks.push({ symbol: f.symbol, recovered: f.recovered, replayed: f.replayed, at: Date.now() });
    if (state.acks.length > 50) state.acks.shift();
  },
  error(f) {
    console.warn("gateway:", f.code, f.message);
  },
};

// -- connection state ----------------------------------------------------------------------------

let refused = "";
window.addEventListener("unauthorized", (ev) => {
  refused = ev.detail || "token refused";
  $("banner").textContent = `The API refused this page's token (${refused}). Open the dashboard with a valid ?token=.`;
  $("banner").hidden = false;
});

function onState(name, info) {
  const conn = $("conn");
  const banner = $("banner");
  conn.dataset.state = name;
  conn.textContent = name;
  document.body.classList.toggle("stale", name === "down" || (name === "connecting" && info.everLive));
  if (name === "live" || (name === "connecting" && !info.everLive && info.attempt === 0)) {
    if (!banner.hidden) health.poll(); // back: read the strip now, not at the next round
    banner.hidden = !refused;
    return;
  }
  if (name === "recovering") {
    banner.textContent = "Reconnected: catching up from the last offset…";
    banner.hidden = false;
    return;
  }
  const why = info.lastClose ? ` (${info.lastClose})` : "";
  const when = info.retryIn === Infinity ? "paused" : name === "down" ? `reconnecting in ${(info.retryIn / 1000).toFixed(1)} s` : "reconnecting now";
  banner.textContent = info.code === 4401 || refused
    ? `Disconnected: the token was refused${why}. Open the dashboard with a valid ?token=.`
    : `Disconnected from the gateway${why}: ${when} (attempt ${info.attempt}). Data shown may be stale.`;
  banner.hidden = false;
}

// -- start ---------------------------------------------------------------------------------------

async function start() {
  $("user").textContent = tokenUser() || (token ? "" : "no token: add ?token=… to the URL");
  installKeys({
    move: (step, focus) => select(watchlist.neighbour(step), focus),
    bar: (step) => stepBar(step),
    filter: () => $("tape-min").focus(),
    alert: () => alerts.focusFor(state.selected, state.quotes.get(state.selected)?.price),
    theme: () => theme.toggle(),
  });
  $("bar-prev").addEventListener("click", () => stepBar(-1));
  $("bar-next").addEventListener("click", () => stepBar(1));
  $("ladder-tf").addEventListener("change", (ev) => {
    state.tf = ev.target.value;
    state.barIndex = -1;
    state.barsOf = "";
    loadBars(state.selected).catch(() => {});
  });
  window.addEventListener("themechange", () => bars.draw());
  await theme.load();
  let symbols = DEFAULT_SYMBOLS;
  try {
    const s = await api("/api/me/settings/symbols");
    if (Array.isArray(s.value) && s.value.length) symbols = s.value.slice(0, 50);
  } catch { /* no watchlist saved: the default */ }
  state.symbols = symbols;
  watchlist.setSymbols(symbols);
  alerts.setSymbols(symbols);
  tfOptions();
  health.start();
  const socket = new LiveSocket({
    url: wsUrl(),
    channels: CHANNELS,
    onFrame: (f) => handlers[f.type]?.(f),
    onState,
  });
  window.dashboard = { state, socket }; // for the browser test and for curious traders
  socket.subscribe(symbols);
  socket.connect();
  await Promise.allSettled([loadQuotes(), select(symbols[0]), alerts.refresh(), loadRefs()]);
  tfOptions();
  await Promise.allSettled(symbols.filter((s) => s !== state.selected).map((s) => loadTape(s)));
  setInterval(() => {
    if (!state.selected) return;
    loadIndicators(state.selected).catch(() => {});
    if (state.barIndex >= 0) return; // an older bar does not change
    loadBars(state.selected).catch(() => {});
  }, REFRESH_MS);
  setInterval(loadRefs, REF_REFRESH_MS);
}

start();
