// The student dashboard: five tabs over one `GET /v1/students/profile` answer. The profile is
// read once, when the first tab opens; each tab renders the first time it is opened, with its
// own loading and error state. A student key opens its own profile; an admin key opens the
// student named in the address (`?zoho_id=…` or `?moodle_user_id=…`, as the console links).
import {
  api,
  ApiError,
  day,
  el,
  failure,
  fillPanel,
  money,
  saveBlob,
  setupTabs,
  setupThemeToggle,
  show,
  signIn,
  signOut,
  table,
  when,
} from "/static/common.js";

const LOOKUPS = ["moodle_user_id", "zoho_id", "student_number", "email"];

setupThemeToggle(document.getElementById("theme-toggle"));
document.getElementById("sign-out").addEventListener("click", signOut);

function lookupOf(session) {
  const params = new URLSearchParams(location.search);
  const asked = LOOKUPS.filter((name) => params.get(name));
  if (asked.length) return Object.fromEntries(asked.map((name) => [name, params.get(name)]));
  return session.student_lookup;
}

const session = await signIn();
const lookup = lookupOf(session);
let profilePromise = null;
function profile() {
  if (!lookup) {
    return Promise.reject(
      new ApiError(400, "No student chosen", "An admin key opens a student from the admin console's search."),
    );
  }
  profilePromise ??= api(`/v1/students/profile?${new URLSearchParams(lookup)}`);
  return profilePromise;
}

const who = document.getElementById("who");
profile().then(
  (p) => {
    who.textContent = `${p.student.full_name}${p.student.student_number ? ` · ${p.student.student_number}` : ""}`;
    document.title = `${p.student.full_name} · Student dashboard`;
  },
  (error) => {
    who.textContent = `No profile open (${error.title})`;
  },
);

const renderers = {
  profile: renderProfile,
  academics: renderAcademics,
  finance: renderFinance,
  classes: renderClasses,
  grades: renderGrades,
};
setupTabs(document.getElementById("tabs"), (name, panel) => fillPanel(panel, async () => renderers[name](await profile())));

function renderProfile(p) {
  const s = p.student;
  const initials = el("div", { class: "photo initials", "aria-hidden": "true" }, initialsOf(s.full_name));
  let photo = initials;
  if (s.photo_url) {
    photo = el("img", { class: "photo", src: s.photo_url, alt: `Photo of ${s.full_name}`, width: 80, height: 80 });
    photo.addEventListener("error", () => photo.replaceWith(initials), { once: true });
  }
  const facts = [
    ["Full name", s.full_name],
    ["Academic email", s.email],
    ["Phone", s.phone],
    ["Date of birth", day(s.date_of_birth)],
    ["Address", s.address],
    ["City", s.city],
    ["Country", s.country],
    ["Status", s.status],
    ["Student number", s.student_number],
  ];
  return [
    el("div", { class: "profile-head" }, photo, el("p", { class: "card-title" }, el("strong", {}, s.full_name))),
    el("dl", { class: "facts", id: "profile-facts" }, facts.map(([k, v]) => [el("dt", {}, k), el("dd", {}, show(v))])),
  ];
}

function initialsOf(name) {
  return (name || "?")
    .split(/\s+/)
    .filter(Boolean)
    .slice(0, 2)
    .map((part) => part[0].toUpperCase())
    .join("");
}

function renderAcademics(p) {
  return [
    el("h3", {}, "Programmes"),
    table(
      "Programmes",
      [
        { label: "Code", cell: (r) => show(r.code) },
        { label: "Programme", cell: (r) => show(r.name) },
        { label: "Level", cell: (r) => show(r.level) },
        { label: "Credits", cell: (r) => show(r.credits), num: true },
        { label: "Expected completion", cell: (r) => day(r.expected_completion_date) },
      ],
      p.programs,
      "No programmes.",
    ),
    el("h3", {}, "Registrations"),
    table(
      "Unit registrations",
      [
        { label: "Unit", cell: (r) => `${show(r.unit_code)} ${r.unit_name ? `· ${r.unit_name}` : ""}` },
        { label: "Credits", cell: (r) => show(r.credits), num: true },
        { label: "Status", cell: (r) => show(r.status) },
        { label: "Registered from", cell: (r) => day(r.start_date) },
        { label: "Until", cell: (r) => day(r.end_date) },
      ],
      p.registrations,
      "No registrations.",
    ),
  ];
}

function renderFinance(p) {
  const cards = p.finance_summary.map((f) =>
    el(
      "div",
      { class: "cards", "data-currency": show(f.currency) },
      card("Total fees", money(f.total_fees), "total-fees"),
      card("Paid", money(f.paid), "paid"),
      card("Outstanding", money(f.outstanding), "outstanding"),
      card("Last payment", f.last_payment ? `${money(f.last_payment)} on ${day(f.last_payment_on)}` : "—", "last"),
    ),
  );
  return [
    ...(cards.length ? cards : [el("p", { class: "state empty" }, "No fees on this account.")]),
    el("h3", {}, "Payment history"),
    table(
      "Payment history",
      [
        { label: "Date", cell: (r) => day(r.paid_on || r.due_date) },
        { label: "Item", cell: (r) => show(r.kind) },
        { label: "Amount", cell: (r) => money(r.amount), num: true },
        { label: "Method", cell: (r) => show(r.method) },
        { label: "Status", cell: (r) => statusBadge(r.status) },
        { label: "Receipt", cell: (r) => (r.receipt_url ? receiptButton(r) : "—") },
      ],
      p.payments,
      "No payments.",
    ),
  ];
}

function card(label, value, name) {
  return el("div", { class: "card", "data-figure": name }, el("div", { class: "label" }, label), el("div", { class: "value" }, value));
}

function statusBadge(status) {
  const tone = { paid: "ok", completed: "ok", active: "ok", overdue: "bad", withdrawn: "bad", pending: "warn" }[status];
  return el("span", { class: `badge ${tone || ""}` }, show(status));
}

function receiptButton(payment) {
  const label = `Download receipt for ${money(payment.amount)} paid ${day(payment.paid_on)}`;
  const button = el("button", { type: "button", class: "secondary", "aria-label": label }, "Receipt (PDF)");
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const response = await api(payment.receipt_url, { raw: true });
      saveBlob(await response.blob(), `receipt-${payment.zoho_id}.pdf`);
    } catch (error) {
      button.after(failure(error));
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

function renderClasses(p) {
  return table(
    "Classes",
    [
      { label: "Class", cell: (r) => show(r.name) },
      { label: "Teacher", cell: (r) => (r.teachers.length ? r.teachers.map((t) => t.full_name).join(", ") : "—") },
      { label: "Schedule", cell: (r) => `${day(r.start_date)} to ${day(r.end_date)}` },
      { label: "Status", cell: (r) => statusBadge(r.status) },
      { label: "Enrolment", cell: (r) => show(r.enrollment_status) },
      {
        label: "Moodle",
        cell: (r) =>
          r.moodle_course_url
            ? el("a", { href: r.moodle_course_url, rel: "noopener" }, `Open ${show(r.name)} in Moodle`)
            : "—",
      },
    ],
    p.classes,
    "No classes.",
  );
}

function bar(tone, percent) {
  // Set through the CSSOM: the page's CSP allows no inline style attributes.
  const node = el("div", { class: `bar ${tone}` });
  node.style.width = `${percent}%`;
  return node;
}

function renderGrades(p) {
  const s = p.grade_summary;
  const bars = [
    ["Distinction", s.distinction, "d"],
    ["Merit", s.merit, "m"],
    ["Pass", s.pass, "p"],
    ["Refer", s.refer, "r"],
  ];
  const most = Math.max(1, ...bars.map(([, n]) => n));
  const chart = el(
    "figure",
    { class: "chart", id: "grade-chart" },
    el("figcaption", {}, "Unit grades"),
    bars.map(([label, n, tone]) =>
      el(
        "div",
        { class: "bar-row", "data-grade": label },
        el("span", {}, label),
        el(
          "div",
          { class: "bar-track", role: "img", "aria-label": `${label}: ${n}` },
          bar(tone, (100 * n) / most),
        ),
        el("span", { class: "num" }, String(n)),
      ),
    ),
  );
  const average = s.average_points_per_credit === null ? "—" : s.average_points_per_credit.toFixed(2);
  return [
    el(
      "div",
      { class: "cards" },
      card("Average points per credit", average, "average"),
      card("Graded units", String(s.graded_units), "graded-units"),
      card("Credits graded", String(s.credits), "credits"),
    ),
    chart,
    el("h3", {}, "Grade history"),
    table(
      "Grade history",
      [
        { label: "Unit", cell: (r) => `${show(r.unit_code)}${r.unit_name ? ` · ${r.unit_name}` : ""}` },
        { label: "Grade", cell: (r) => show(r.btec_grade) },
        { label: "Date", cell: (r) => when(r.graded_at) },
        { label: "Feedback", cell: (r) => show(r.feedback) },
        { label: "From", cell: (r) => (r.source === "moodle" ? "Moodle" : "Zoho") },
      ],
      p.grades,
      "No grades yet.",
    ),
  ];
}
