// What both pages share: the key (kept in this tab's sessionStorage only), API calls with it,
// the theme toggle, tabs, panels with a loading and an error state, and small DOM helpers.
// The pages hold no data of their own: everything shown is read from the API with the key.

const KEY_STORE = "ip-api-key";
const THEME_STORE = "ip-theme";

export class ApiError extends Error {
  constructor(status, title, detail) {
    super(detail || title);
    this.status = status;
    this.title = title;
  }
}

export function storedKey() {
  return sessionStorage.getItem(KEY_STORE);
}

export function signOut() {
  sessionStorage.removeItem(KEY_STORE);
  location.reload();
}

/** fetch() an API path with the key; JSON answers are parsed, problems raise ApiError. */
export async function api(path, { method = "GET", raw = false } = {}) {
  const response = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${storedKey()}`, Accept: "application/json" },
  });
  if (!response.ok) {
    let title = `HTTP ${response.status}`;
    let detail = "";
    try {
      const problem = await response.json();
      title = problem.title || title;
      detail = problem.detail || "";
    } catch (e) {
      /* not problem+json */
    }
    throw new ApiError(response.status, title, detail);
  }
  return raw ? response : response.json();
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const dash = "—";
export function show(value) {
  return value === null || value === undefined || value === "" ? dash : String(value);
}
export function money(m) {
  if (!m) return dash;
  return m.currency ? `${m.amount} ${m.currency}` : m.amount;
}
export function day(value) {
  return value ? String(value).slice(0, 10) : dash;
}
export function when(value) {
  if (!value) return dash;
  return String(value).replace("T", " ").replace(/(\.\d+)?(Z|\+00:00)$/, " UTC");
}

/** A table: columns [{label, cell(row) -> node|string, num?}], rows, and a caption. */
export function table(caption, columns, rows, emptyText = "Nothing to show.") {
  if (!rows.length) return el("p", { class: "state empty" }, emptyText);
  return el(
    "div",
    { class: "table-wrap" },
    el(
      "table",
      {},
      el("caption", { class: "visually-hidden" }, caption),
      el("thead", {}, el("tr", {}, columns.map((c) => el("th", { scope: "col", class: c.num ? "num" : null }, c.label)))),
      el(
        "tbody",
        {},
        rows.map((row) => el("tr", {}, columns.map((c) => el("td", { class: c.num ? "num" : null }, c.cell(row))))),
      ),
    ),
  );
}

export function loading(text = "Loading…") {
  return el("p", { class: "state loading", role: "status" }, text);
}

export function failure(error) {
  const text = error instanceof ApiError ? `${error.title}: ${error.message}` : `Could not load: ${error.message}`;
  return el("p", { class: "state error", role: "alert" }, text);
}

/** Fill a panel: the loading state, then what `render` returns, or the error state. */
export async function fillPanel(panel, render) {
  const body = panel.querySelector(".panel-body");
  panel.setAttribute("aria-busy", "true");
  body.replaceChildren(loading());
  try {
    const content = await render();
    body.replaceChildren(...[content].flat(Infinity).filter((node) => node !== null && node !== undefined));
  } catch (error) {
    body.replaceChildren(failure(error));
  } finally {
    panel.setAttribute("aria-busy", "false");
  }
}

/** The WAI-ARIA tabs pattern: arrow keys move between tabs; a tab's panel fills the first time it opens. */
export function setupTabs(tablist, onFirstOpen) {
  const tabs = [...tablist.querySelectorAll('[role="tab"]')];
  const opened = new Set();
  function select(tab, focus) {
    for (const t of tabs) {
      const selected = t === tab;
      t.setAttribute("aria-selected", String(selected));
      t.tabIndex = selected ? 0 : -1;
      document.getElementById(t.getAttribute("aria-controls")).hidden = !selected;
    }
    if (focus) tab.focus();
    const name = tab.dataset.tab;
    history.replaceState(null, "", `${location.pathname}${location.search}#${name}`);
    if (!opened.has(name)) {
      opened.add(name);
      onFirstOpen(name, document.getElementById(tab.getAttribute("aria-controls")));
    }
  }
  tablist.addEventListener("click", (e) => {
    const tab = e.target.closest('[role="tab"]');
    if (tab) select(tab, false);
  });
  tablist.addEventListener("keydown", (e) => {
    const i = tabs.indexOf(document.activeElement);
    if (i < 0) return;
    const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[e.key];
    if (next === undefined) return;
    e.preventDefault();
    select(tabs[(next + tabs.length) % tabs.length], true);
  });
  const wanted = tabs.find((t) => `#${t.dataset.tab}` === location.hash) || tabs[0];
  select(wanted, false);
  return { reload: (name) => opened.delete(name) };
}

export function setupThemeToggle(button) {
  function paint() {
    const dark = document.documentElement.getAttribute("data-theme") === "dark";
    button.setAttribute("aria-pressed", String(dark));
    button.textContent = dark ? "Dark theme: on" : "Dark theme: off";
  }
  button.addEventListener("click", () => {
    const dark = document.documentElement.getAttribute("data-theme") !== "dark";
    document.documentElement.setAttribute("data-theme", dark ? "dark" : "light");
    try {
      localStorage.setItem(THEME_STORE, dark ? "dark" : "light");
    } catch (e) {
      /* storage may be disabled; the toggle still works for this page */
    }
    paint();
  });
  paint();
}

/** Show the sign-in form until a key is given; resolve with the key's session (`GET /v1/session`). */
export function signIn() {
  const form = document.getElementById("signin-form");
  const box = document.getElementById("signin");
  const app = document.getElementById("app");
  const message = document.getElementById("signin-message");
  return new Promise((resolve) => {
    async function attempt() {
      try {
        const session = await api("/v1/session");
        box.hidden = true;
        app.hidden = false;
        resolve(session);
      } catch (error) {
        sessionStorage.removeItem(KEY_STORE);
        box.hidden = false;
        app.hidden = true;
        message.textContent = error.status === 401 ? "That key is unknown or revoked." : failure(error).textContent;
      }
    }
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const key = form.elements.namedItem("api-key").value.trim();
      if (!key) {
        message.textContent = "Enter an API key.";
        return;
      }
      sessionStorage.setItem(KEY_STORE, key);
      attempt();
    });
    if (storedKey()) attempt();
    else {
      box.hidden = false;
      app.hidden = true;
    }
  });
}

/** Download an authenticated file (a receipt, a CSV) under a name. */
export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

export function debounce(fn, ms) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}
