// Dark or light, from config:USER:theme (via /api/me/settings/theme); the toggle saves it.
import { api } from "./api.js";

export class Theme {
  constructor(button) {
    this.button = button;
    this.current = "dark";
    button.addEventListener("click", () => this.toggle());
  }

  apply(name) {
    this.current = name === "light" ? "light" : "dark";
    document.documentElement.dataset.theme = this.current;
    this.button.textContent = this.current === "dark" ? "☾ dark" : "☀ light";
    this.button.setAttribute("aria-pressed", String(this.current === "light"));
    window.dispatchEvent(new Event("themechange"));
  }

  async load() {
    try {
      const s = await api("/api/me/settings/theme");
      this.apply(s.value);
    } catch {
      this.apply("dark"); // not set yet (404) or the API away: the default
    }
  }

  async toggle() {
    const next = this.current === "dark" ? "light" : "dark";
    this.apply(next);
    try {
      await api("/api/me/settings/theme", { method: "PUT", body: next });
    } catch (exc) {
      this.button.title = `not saved: ${exc.message}`;
    }
  }
}
