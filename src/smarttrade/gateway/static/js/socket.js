// The WebSocket to /ws: subscribe, keep it alive, reconnect with backoff, and resume by offset.
//
// Each symbol's position is the offset and epoch of the last trades frame (or snapshot) seen; a
// resubscribe sends them as `since` (docs/protocol.md), so the gateway replays exactly what was
// missed, or answers with a snapshot marked recovered:false, which the page treats as "reload
// this symbol". A trades frame at or before the position (same epoch) is a duplicate and dropped.

const PING_EVERY_MS = 20000;
const SILENT_CLOSE_MS = 50000; // nothing heard for this long: the socket is dead, start again
const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 10000];

export function offsetKey(offset) {
  const [ms, seq] = String(offset || "0-0").split("-");
  return [Number(ms) || 0, Number(seq) || 0];
}

export function after(a, b) {
  const [am, as] = offsetKey(a);
  const [bm, bs] = offsetKey(b);
  return am > bm || (am === bm && as > bs);
}

export class LiveSocket {
  constructor({ url, channels, onFrame, onState }) {
    this.url = url;
    this.channels = channels;
    this.onFrame = onFrame;
    this.onState = onState;
    this.symbols = new Set();
    this.positions = new Map(); // symbol -> {offset, epoch}
    this.attempt = 0;
    this.ws = null;
    this.heard = 0;
    this.timer = null;
    this.pinger = null;
    this.stopped = false;
    this.everLive = false;
    this.lastClose = "";
  }

  state(name, detail = {}) {
    this.onState(name, { attempt: this.attempt, lastClose: this.lastClose, everLive: this.everLive, ...detail });
  }

  connect() {
    clearTimeout(this.timer);
    this.state("connecting");
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (exc) {
      this.lastClose = String(exc.message ?? exc);
      this.retry();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.heard = Date.now();
      const resuming = this.positions.size > 0;
      this.attempt = 0;
      this.sendSubscribe([...this.symbols]);
      this.everLive = true;
      this.state(resuming ? "recovering" : "live");
      if (resuming) this.recoverTimer = setTimeout(() => this.state("live"), 1500);
      clearInterval(this.pinger);
      this.pinger = setInterval(() => this.keepAlive(), PING_EVERY_MS / 4);
    };
    ws.onmessage = (ev) => {
      this.heard = Date.now();
      let frame;
      try {
        frame = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (this.note(frame)) this.onFrame(frame);
    };
    ws.onclose = (ev) => {
      clearInterval(this.pinger);
      clearTimeout(this.recoverTimer);
      if (this.ws !== ws) return;
      this.ws = null;
      this.lastClose = ev.code ? `closed ${ev.code}${ev.reason ? ": " + ev.reason : ""}` : "connection lost";
      if (!this.stopped) this.retry(ev.code);
    };
    ws.onerror = () => {}; // onclose follows and says what happened
  }

  retry(code) {
    const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)] * (0.8 + Math.random() * 0.4);
    this.attempt += 1;
    this.state("down", { retryIn: delay, code });
    this.timer = setTimeout(() => this.connect(), delay);
  }

  keepAlive() {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    if (Date.now() - this.heard > SILENT_CLOSE_MS) {
      ws.close(4000, "no answer");
      return;
    }
    if (Date.now() - (this.pinged || 0) >= PING_EVERY_MS) {
      this.pinged = Date.now();
      this.send({ type: "ping", id: this.pinged });
    }
  }

  // Track the symbol's position; false for a frame already seen (a duplicate trades frame).
  note(frame) {
    const { symbol, offset, epoch } = frame;
    if (!symbol || !offset) return true;
    const pos = this.positions.get(symbol);
    if (frame.type === "trades") {
      if (pos && pos.epoch === epoch && !after(offset, pos.offset)) return false;
      if (pos && pos.epoch !== epoch) frame.newEpoch = true; // its history was lost (a Redis restart)
      this.positions.set(symbol, { offset, epoch });
    } else if (frame.type === "snapshot") {
      this.positions.set(symbol, { offset, epoch });
    }
    return true;
  }

  // Close and stay closed until resume() (a test's way to miss messages on purpose).
  pause() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.ws?.close(1000, "paused");
    this.state("down", { retryIn: Infinity });
  }

  resume() {
    this.stopped = false;
    this.connect();
  }

  send(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  sendSubscribe(symbols) {
    if (!symbols.length) return;
    const since = {};
    for (const s of symbols) {
      const pos = this.positions.get(s);
      if (pos && pos.epoch) since[s] = { offset: pos.offset, epoch: pos.epoch };
    }
    this.send({ type: "subscribe", symbols, channels: this.channels, since });
  }

  subscribe(symbols) {
    const fresh = symbols.filter((s) => !this.symbols.has(s));
    fresh.forEach((s) => this.symbols.add(s));
    this.sendSubscribe(fresh);
  }

  // Forget a symbol's position so its next subscribe starts fresh (after a reload of its state).
  reset(symbol, offset, epoch) {
    if (offset && epoch) this.positions.set(symbol, { offset, epoch });
    else this.positions.delete(symbol);
  }
}
