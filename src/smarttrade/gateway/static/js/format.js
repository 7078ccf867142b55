// Number and time formatting, one place: prices keep each symbol's own decimals (learned from
// what it trades at), volumes drop needless zeros, times are the local wall clock.

const decimals = new Map(); // symbol -> decimals seen in its prices (at most 6)

function decimalsOf(x) {
  if (!Number.isFinite(x)) return 0;
  const text = String(x);
  const dot = text.indexOf(".");
  return dot < 0 || text.includes("e") ? 0 : Math.min(6, text.length - dot - 1);
}

export function learnPrice(symbol, price) {
  const d = decimalsOf(price);
  if (d > (decimals.get(symbol) ?? -1)) decimals.set(symbol, d);
}

export function price(symbol, x) {
  if (x === null || x === undefined || !Number.isFinite(x)) return "–";
  return x.toFixed(decimals.get(symbol) ?? decimalsOf(x));
}

export function qty(x) {
  if (x === null || x === undefined || !Number.isFinite(x)) return "–";
  if (Number.isInteger(x)) return String(x);
  return x.toFixed(4).replace(/0+$/, "").replace(/\.$/, "");
}

export function signed(x, digits) {
  if (x === null || x === undefined || !Number.isFinite(x)) return "–";
  const text = digits === undefined ? qty(Math.abs(x)) : Math.abs(x).toFixed(digits);
  return (x > 0 ? "+" : x < 0 ? "-" : "") + text;
}

export function value(x) {
  if (x === null || x === undefined || !Number.isFinite(x)) return "–";
  const a = Math.abs(x);
  return x.toFixed(a >= 1000 ? 1 : a >= 10 ? 2 : 4);
}

export function bytes(n) {
  if (n === null || n === undefined) return "–";
  if (n >= 2 ** 30) return (n / 2 ** 30).toFixed(2) + " GiB";
  return (n / 2 ** 20).toFixed(1) + " MiB";
}

const pad = (n, w = 2) => String(n).padStart(w, "0");

export function clock(seconds, ms = false) {
  const d = new Date(seconds * 1000);
  const text = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return ms ? `${text}.${pad(d.getMilliseconds(), 3)}` : text;
}

export function hhmm(seconds) {
  const d = new Date(seconds * 1000);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) node.append(c);
  return node;
}
