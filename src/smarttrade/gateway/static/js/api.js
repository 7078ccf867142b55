// The HTTP API with the page's token (read once from ?token=). Every call has a time bound; an
// error carries the API's {"code","message"} so panels can show it as it is.

const TIMEOUT_MS = 8000;

export const token = new URLSearchParams(location.search).get("token") || "";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function api(path, { method = "GET", body } = {}) {
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), TIMEOUT_MS);
  const headers = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  try {
    const res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: ctrl.signal,
      cache: "no-store",
    });
    const text = await res.text();
    const data = text ? JSON.parse(text) : null;
    if (!res.ok) {
      if (res.status === 401) window.dispatchEvent(new CustomEvent("unauthorized", { detail: data?.message }));
      throw new ApiError(res.status, data?.code ?? "http_" + res.status, data?.message ?? res.statusText);
    }
    return data;
  } catch (exc) {
    if (exc instanceof ApiError) throw exc;
    throw new ApiError(0, "network", exc.name === "AbortError" ? "no answer in time" : String(exc.message ?? exc));
  } finally {
    clearTimeout(timer);
  }
}

export function wsUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws?token=${encodeURIComponent(token)}`;
}

// The user id from the token's payload, for the header only (the server checks the signature).
export function tokenUser() {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part)).sub ?? "";
  } catch {
    return "";
  }
}
