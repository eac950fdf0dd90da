// The admin console: live student search, the event log, failed and dead events with retries,
// the sync history with launch buttons, and the configuration with connection tests. Every
// figure comes from the API, read with the admin key; the API answers with the key's tenant's
// students, events and syncs only.
import {
  api,
  debounce,
  el,
  failure,
  fillPanel,
  loading,
  saveBlob,
  setupTabs,
  setupThemeToggle,
  show,
  signIn,
  signOut,
  table,
  when,
} from "/static/common.js";

const PAGE = 50;

setupThemeToggle(document.getElementById("theme-toggle"));
document.getElementById("sign-out").addEventListener("click", signOut);

const session = await signIn();
const who = document.getElementById("who");
if (session.scope !== "admin") {
  document.getElementById("app").replaceChildren(
    el(
      "p",
      { class: "state error", role: "alert" },
      "The admin console needs an admin key: this is a student key. ",
      el("a", { href: "/dashboard" }, "Open your dashboard"),
    ),
  );
} else {
  who.textContent = `Tenant ${session.tenant_id} · key ${session.key_id}`;
  const openers = { students: openStudents, events: openEvents, failed: openFailed, syncs: openSyncs, config: openConfig };
  setupTabs(document.getElementById("tabs"), (name, panel) => openers[name](panel));
}

// --- Students -------------------------------------------------------------------------------
function openStudents(panel) {
  const input = document.getElementById("student-search");
  const body = panel.querySelector(".panel-body");
  body.replaceChildren(el("p", { class: "state empty" }, "Type to search."));
  let asked = 0;
  const search = debounce(async () => {
    const q = input.value.trim();
    const mine = ++asked;
    if (!q) {
      body.replaceChildren(el("p", { class: "state empty" }, "Type to search."));
      return;
    }
    body.replaceChildren(loading("Searching…"));
    try {
      const page = await api(`/v1/students/search?${new URLSearchParams({ q, limit: 20 })}`);
      if (mine !== asked) return; // a newer search is under way
      body.replaceChildren(
        el("p", { role: "status", class: "hint" }, `${page.items.length}${page.next_cursor ? "+" : ""} found for “${q}”`),
        el("ul", { class: "results", id: "search-results" }, page.items.map(hit)),
      );
    } catch (error) {
      if (mine === asked) body.replaceChildren(failure(error));
    }
  }, 250);
  input.addEventListener("input", search);
  input.focus();
}

function hit(student) {
  const lookup = student.zoho_id ? { zoho_id: student.zoho_id } : { moodle_user_id: student.moodle_user_id };
  return el(
    "li",
    {},
    el("a", { href: `/dashboard?${new URLSearchParams(lookup)}` }, student.full_name || student.student_key),
    el(
      "div",
      { class: "meta" },
      [student.student_key, student.student_number, student.email, student.username, student.status].filter(Boolean).join(" · "),
    ),
  );
}

// --- Event log --------------------------------------------------------------------------------
function eventQuery(form, extra = {}) {
  const data = new FormData(form);
  const params = new URLSearchParams(extra);
  for (const name of ["type", "status"]) if (data.get(name)) params.set(name, data.get(name));
  if (data.get("since")) params.set("since", data.get("since"));
  if (data.get("until")) {
    // "Until" is inclusive of its day in the form; the API's until is exclusive.
    const next = new Date(`${data.get("until")}T00:00:00Z`);
    next.setUTCDate(next.getUTCDate() + 1);
    params.set("until", next.toISOString().slice(0, 10));
  }
  const search = String(data.get("search") || "").trim();
  if (/^\d+$/.test(search)) params.set("user", search);
  return { params, eventId: search && !/^\d+$/.test(search) ? search : null };
}

function openEvents(panel) {
  const form = document.getElementById("event-filters");
  const cursors = [null];
  let at = 0;
  async function load() {
    await fillPanel(panel, async () => {
      const { params, eventId } = eventQuery(form, { payload: "true" });
      if (eventId) {
        // The events API filters by user, not by event id: look through the newest 1,000 that match the rest.
        params.set("limit", "1000");
        const found = (await api(`/v1/events?${params}`)).events.filter((e) => e.event_id.includes(eventId));
        return [el("p", { class: "hint", role: "status" }, `${found.length} event(s) whose id contains “${eventId}”`), eventTable(found)];
      }
      params.set("limit", String(PAGE));
      if (cursors[at]) params.set("cursor", cursors[at]);
      const page = await api(`/v1/events?${params}`);
      cursors[at + 1] = page.next_cursor;
      const previous = el("button", { type: "button", class: "secondary", disabled: at === 0 }, "Previous page");
      const next = el("button", { type: "button", class: "secondary", disabled: !page.next_cursor }, "Next page");
      previous.addEventListener("click", () => { at -= 1; load(); });
      next.addEventListener("click", () => { at += 1; load(); });
      return [
        eventTable(page.events),
        el("nav", { class: "pager", "aria-label": "Event log pages" }, previous, el("span", {}, `Page ${at + 1} · ${page.events.length} events`), next),
      ];
    });
  }
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    cursors.length = 1;
    at = 0;
    load();
  });
  document.getElementById("ev-export").addEventListener("click", () => exportCsv(form, panel));
  load();
}

function eventTable(rows, { retry = false } = {}) {
  const columns = [
    { label: "Received", cell: (r) => when(r.received_at) },
    { label: "Event id", cell: (r) => el("code", {}, r.event_id) },
    { label: "Type", cell: (r) => show(r.event_type) },
    { label: "Status", cell: (r) => el("span", { class: "event-status" }, show(r.status)) },
    { label: "User", cell: (r) => show(r.user_id) },
    { label: "Attempts", cell: (r) => show(r.retry_count), num: true },
    { label: "Last error", cell: (r) => show(r.last_error) },
    { label: "Payload", cell: (r) => jsonButton(r) },
  ];
  if (retry) columns.push({ label: "Retry", cell: (r) => retryButton(r) });
  const t = table("Events", columns, rows, "No events match.");
  t.querySelectorAll?.("tbody tr").forEach((tr, i) => tr.setAttribute("data-event-id", rows[i].event_id));
  return t;
}

function jsonButton(row) {
  return el(
    "button",
    {
      type: "button",
      class: "secondary",
      "aria-label": `Show the JSON of event ${row.event_id}`,
      onclick: () => {
        document.getElementById("event-dialog-title").textContent = `Event ${row.event_id}`;
        document.getElementById("event-json").textContent = JSON.stringify(row, null, 2);
        document.getElementById("event-dialog").showModal();
      },
    },
    "JSON",
  );
}

async function exportCsv(form, panel) {
  // Every matching event, a page of 1,000 at a time, as one CSV (the API's own CSV, header once).
  const { params } = eventQuery(form, { format: "csv", limit: "1000" });
  const parts = [];
  let cursor = null;
  const button = document.getElementById("ev-export");
  button.disabled = true;
  try {
    for (let page = 0; page < 100; page += 1) {
      if (cursor) params.set("cursor", cursor);
      const response = await api(`/v1/events?${params}`, { raw: true });
      const text = await response.text();
      parts.push(page === 0 ? text : text.slice(text.indexOf("\n") + 1));
      cursor = response.headers.get("X-Next-Cursor");
      if (!cursor) break;
    }
    saveBlob(new Blob(parts, { type: "text/csv" }), "events.csv");
  } catch (error) {
    panel.querySelector(".panel-body").prepend(failure(error));
  } finally {
    button.disabled = false;
  }
}

// --- Failed and dead --------------------------------------------------------------------------
async function matchingFailures(type) {
  const out = [];
  for (const status of ["failed", "dead"]) {
    const params = new URLSearchParams({ status, limit: "1000", payload: "true" });
    if (type) params.set("type", type);
    let cursor = null;
    do {
      if (cursor) params.set("cursor", cursor);
      const page = await api(`/v1/events?${params}`);
      out.push(...page.events);
      cursor = page.next_cursor;
    } while (cursor);
  }
  return out;
}

function retryButton(row) {
  const button = el("button", { type: "button", "aria-label": `Retry event ${row.event_id}` }, "Retry");
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await api(`/v1/events/${encodeURIComponent(row.event_id)}/retry`, { method: "POST" });
      button.closest("tr").querySelector(".event-status").textContent = "queued for retry";
      button.textContent = "Queued";
    } catch (error) {
      button.disabled = false;
      button.after(failure(error));
    }
  });
  return button;
}

function openFailed(panel) {
  const form = document.getElementById("failed-filters");
  const result = document.getElementById("retry-all-result");
  const type = () => new FormData(form).get("type")?.toString().trim() || "";
  const load = () => fillPanel(panel, async () => eventTable(await matchingFailures(type()), { retry: true }));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    load();
  });
  document.getElementById("retry-all").addEventListener("click", async () => {
    const matching = await matchingFailures(type());
    if (!matching.length) {
      result.textContent = "No failed or dead events match.";
      return;
    }
    if (!confirm(`Retry ${matching.length} failed or dead event(s)?`)) return;
    let done = 0;
    const errors = [];
    for (const row of matching) {
      try {
        await api(`/v1/events/${encodeURIComponent(row.event_id)}/retry`, { method: "POST" });
        done += 1;
      } catch (error) {
        errors.push(`${row.event_id}: ${error.message}`);
      }
      result.textContent = `Queued ${done} of ${matching.length} for retry…`;
    }
    result.textContent = `Queued ${done} of ${matching.length} for retry.${errors.length ? ` ${errors.length} failed: ${errors.slice(0, 3).join("; ")}` : ""}`;
    load();
  });
  load();
}

// --- Sync history -----------------------------------------------------------------------------
function openSyncs(panel) {
  const status = document.getElementById("sync-launcher");
  const buttons = [...document.querySelectorAll("#sync-buttons button")];
  api("/v1/admin/syncs").then(
    (launcher) => {
      status.textContent = launcher.detail;
      for (const button of buttons) {
        button.disabled = !launcher.configured;
        if (!launcher.configured) button.title = launcher.detail;
      }
    },
    (error) => status.replaceChildren(failure(error)),
  );
  for (const button of buttons) {
    button.addEventListener("click", async () => {
      button.disabled = true;
      status.textContent = `Starting ${button.dataset.job}…`;
      try {
        const run = await api(`/v1/admin/syncs/${button.dataset.job}`, { method: "POST" });
        status.replaceChildren(`${run.job} started: `, el("a", { href: run.run_url, rel: "noopener" }, `run ${run.run_id} in the Dagster UI`));
      } catch (error) {
        status.replaceChildren(failure(error));
      } finally {
        button.disabled = false;
      }
    });
  }
  fillPanel(panel, async () => {
    const page = await api("/v1/sync/history?limit=50");
    return table(
      "Sync runs, newest first",
      [
        { label: "Started", cell: (r) => when(r.started_at) },
        { label: "Kind", cell: (r) => r.kind },
        { label: "Status", cell: (r) => el("span", { class: `badge ${r.status === "success" ? "ok" : r.status === "failure" ? "bad" : "warn"}` }, r.status) },
        { label: "Records read", cell: (r) => String(total(r, "read")), num: true },
        { label: "Inserted / updated / deleted", cell: (r) => `${total(r, "inserted")} / ${total(r, "updated")} / ${total(r, "deleted")}`, num: true },
        { label: "Time", cell: (r) => duration(r), num: true },
        { label: "Error", cell: (r) => show(r.error) },
      ],
      page.items,
      "No sync has run yet.",
    );
  });
}

function total(run, field) {
  return run.tables.reduce((sum, t) => sum + t[field], 0);
}

function duration(run) {
  if (!run.finished_at) return "running";
  const seconds = (Date.parse(run.finished_at) - Date.parse(run.started_at)) / 1000;
  return seconds < 120 ? `${seconds.toFixed(1)} s` : `${(seconds / 60).toFixed(1)} min`;
}

// --- Configuration ----------------------------------------------------------------------------
function openConfig(panel) {
  const results = document.getElementById("connection-results");
  for (const button of document.querySelectorAll("[data-test]")) {
    button.addEventListener("click", async () => {
      const source = button.dataset.test;
      const out = el("div", { class: "conn-result", id: `conn-${source}` }, loading(`Calling ${source}…`));
      document.getElementById(`conn-${source}`)?.remove();
      results.append(out);
      button.disabled = true;
      try {
        const test = await api(`/v1/admin/connections/${source}/test`, { method: "POST" });
        const reached = Object.entries(test.reached).map(([k, v]) => `${k}: ${v}`).join(", ");
        out.replaceChildren(
          el(
            "p",
            { class: `state ${test.ok ? "" : "error"}`, role: test.ok ? "status" : "alert" },
            el("span", { class: `badge ${test.ok ? "ok" : "bad"}` }, test.ok ? "Reached" : "Failed"),
            ` ${source} at ${test.url} in ${test.elapsed_ms} ms. `,
            test.ok ? reached : test.error,
          ),
        );
      } catch (error) {
        out.replaceChildren(failure(error));
      } finally {
        button.disabled = false;
      }
    });
  }
  fillPanel(panel, async () => {
    const config = await api("/v1/admin/config");
    return [
      el("h3", {}, "Effective settings"),
      table(
        "Settings (secrets masked)",
        [
          { label: "Setting", cell: (r) => el("code", {}, r.env || r.name) },
          { label: "Value", cell: (r) => el("span", { "data-setting": r.name }, typeof r.value === "object" && r.value !== null ? JSON.stringify(r.value) : show(r.value)) },
          { label: "Secret", cell: (r) => (r.secret ? "yes" : "") },
        ],
        config.settings,
      ),
      el("h3", {}, "Field mapping in force"),
      el("p", { class: "hint" }, `From ${config.field_mapping.file}`),
      config.field_mapping.error ? el("p", { class: "state error", role: "alert" }, config.field_mapping.error) : null,
      table(
        "Field mapping",
        [
          { label: "Module", cell: (r) => r.module },
          { label: "Source field", cell: (r) => el("code", {}, r.source_field) },
          { label: "Canonical column", cell: (r) => `${r.entity}.${r.canonical_column}` },
          { label: "Transform", cell: (r) => r.transform },
        ],
        config.field_mapping.columns,
      ),
    ];
  });
}
