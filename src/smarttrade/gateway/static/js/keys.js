// The keyboard: watchlist with arrows or j/k, bars with h/l or [ ], and one-key actions. Keys
// typed into a field stay in the field (Esc leaves it).

export function installKeys(actions) {
  const help = document.getElementById("help");
  let before = null;
  const openHelp = (open) => {
    if (open) {
      before = document.activeElement;
      help.hidden = false;
      document.getElementById("help-close").focus();
    } else if (!help.hidden) {
      help.hidden = true;
      before?.focus?.();
    }
  };
  document.getElementById("help-toggle").addEventListener("click", () => openHelp(help.hidden));
  document.getElementById("help-close").addEventListener("click", () => openHelp(false));

  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const t = ev.target;
    const typing = t instanceof HTMLInputElement || t instanceof HTMLSelectElement || t instanceof HTMLTextAreaElement;
    if (ev.key === "Escape") {
      if (!help.hidden) openHelp(false);
      else if (typing) t.blur();
      return;
    }
    if (typing) return;
    if (!help.hidden) {
      if (ev.key === "?") openHelp(false);
      return;
    }
    const act = {
      ArrowDown: () => actions.move(1, true), j: () => actions.move(1, true),
      ArrowUp: () => actions.move(-1, true), k: () => actions.move(-1, true),
      h: () => actions.bar(-1), "[": () => actions.bar(-1),
      l: () => actions.bar(1), "]": () => actions.bar(1),
      "/": () => actions.filter(), a: () => actions.alert(), t: () => actions.theme(),
      "?": () => openHelp(true),
    }[ev.key];
    if (!act) return;
    if ((ev.key === "ArrowDown" || ev.key === "ArrowUp") && t.closest?.(".scroll")) return; // scroll the panel
    ev.preventDefault();
    act();
  });
}
