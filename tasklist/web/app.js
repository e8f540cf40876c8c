// taskpool's web tasklist: the caller's tasks from the stream (GET /api/tasks/stream, NDJSON),
// kept live; filters and sort as the API offers them; a task's details with its data entry.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  token: null,       // the bearer token in use
  devUsers: null,    // development sign-in: [{user, groups, token}], or null
  tasks: new Map(),  // id -> task, what the list shows
  staging: null,     // a snapshot being received (until its marker)
  lastId: null,      // the last live event id, to resume with Last-Event-ID
  controller: null,  // aborts the current stream
  retry: 500,
  resynced: false,
  selected: null,
};

// ---- connection state -------------------------------------------------------------------
function setConnection(kind, text) {
  const pill = $("connection");
  pill.dataset.state = kind;
  pill.textContent = text;
}

// ---- sign-in ------------------------------------------------------------------------------
async function loadDevUsers() {
  const response = await fetch("/api/dev/users", { headers: { Accept: "application/json" } });
  if (!response.ok) return null;
  const body = await response.json();
  return body;
}

async function setUpSignIn() {
  const dev = await loadDevUsers().catch(() => null);
  const select = $("user");
  if (dev) {
    state.devUsers = dev.users;
    select.replaceChildren(...dev.users.map((u) => {
      const option = document.createElement("option");
      option.value = u.user;
      option.textContent = u.groups.length ? `${u.user} (${u.groups.join(", ")})` : u.user;
      return option;
    }));
    const remembered = localStorage.getItem("taskpool.user");
    if (remembered && dev.users.some((u) => u.user === remembered)) select.value = remembered;
    const notice = $("dev-notice");
    notice.textContent = dev.notice;
    notice.hidden = false;
    select.addEventListener("change", () => {
      localStorage.setItem("taskpool.user", select.value);
      signInAs(select.value);
    });
    signInAs(select.value);
  } else {
    select.hidden = true;
    document.querySelector(".who label").textContent = "Bearer token";
    const input = $("token");
    input.hidden = false;
    input.value = sessionStorage.getItem("taskpool.token") || "";
    input.addEventListener("change", () => {
      sessionStorage.setItem("taskpool.token", input.value.trim());
      state.token = input.value.trim();
      reconnect(true);
    });
    state.token = input.value.trim() || null;
    if (state.token) reconnect(true); else setConnection("offline", "Not signed in");
  }
}

function signInAs(user) {
  const entry = state.devUsers.find((u) => u.user === user);
  state.token = entry ? entry.token : null;
  $("tasks-title").textContent = entry ? `${entry.user}'s tasks` : "My tasks";
  closeDetails();
  reconnect(true);
}

// A token from before a restart is refused: sign in again with a fresh one.
async function refreshDevToken() {
  const dev = await loadDevUsers().catch(() => null);
  if (!dev) return false;
  state.devUsers = dev.users;
  const entry = dev.users.find((u) => u.user === $("user").value);
  state.token = entry ? entry.token : null;
  return Boolean(entry);
}

// ---- filters ------------------------------------------------------------------------------
function query() {
  const params = new URLSearchParams();
  for (const name of ["q", "sort", "priorityMin", "priorityMax", "businessKey", "application", "processDefinitionKey"]) {
    const value = $(name).value.trim();
    if (value && !(name === "sort" && value === "-priority")) params.set(name, value);
  }
  // Dates are whole days in the browser's time zone: due after the day's start, before its end.
  const after = $("dueAfter").value;
  if (after) params.set("dueAfter", String(new Date(`${after}T00:00:00`).getTime() - 1));
  const before = $("dueBefore").value;
  if (before) params.set("dueBefore", String(new Date(`${before}T00:00:00`).getTime() + 86400000));
  return params;
}

let filterTimer = null;
function filtersChanged() {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => reconnect(true), 250);
}

// ---- the stream ---------------------------------------------------------------------------
function reconnect(fresh) {
  if (fresh) state.lastId = null;
  if (state.controller) state.controller.abort();
  if (!state.token) return;
  const controller = new AbortController();
  state.controller = controller;
  stream(controller).catch((error) => {
    if (controller.signal.aborted) return;
    scheduleRetry(controller, error);
  });
}

function scheduleRetry(controller) {
  setConnection("reconnecting", "Reconnecting…");
  const pause = state.retry;
  state.retry = Math.min(state.retry * 2, 5000);
  setTimeout(() => {
    if (state.controller === controller) reconnect(false);
  }, pause);
}

async function stream(controller) {
  const headers = { Authorization: `Bearer ${state.token}`, Accept: "application/x-ndjson" };
  if (state.lastId) headers["Last-Event-ID"] = state.lastId;
  const params = query();
  const response = await fetch(`/api/tasks/stream?${params}`, { headers, signal: controller.signal });
  if (response.status === 401 && state.devUsers && (await refreshDevToken())) {
    return reconnect(true);
  }
  if (response.status === 400) {
    const body = await response.json().catch(() => ({}));
    $("filter-error").textContent = body.message || "These filters are not accepted.";
    $("filter-error").hidden = false;
    setConnection("offline", "Filters refused");
    return;
  }
  if (!response.ok) throw new Error(`the stream answered ${response.status}`);
  $("filter-error").hidden = true;
  if (!state.lastId) state.staging = new Map();
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      if (line.trim()) handle(JSON.parse(line));
    }
  }
  throw new Error("the stream ended");
}

function handle(event) {
  if (event.id && !event.id.endsWith("-s")) state.lastId = event.id;
  switch (event.event) {
    case "upsert":
      if (state.staging) state.staging.set(event.data.id, event.data);
      else upsert(event.data);
      break;
    case "remove":
      remove(event.data.id);
      break;
    case "marker":
      if (state.staging) {
        state.tasks = state.staging;
        state.staging = null;
        renderAll();
      }
      state.retry = 500;
      if (state.resynced) {
        setConnection("resynced", "Live · resynced");
        setTimeout(() => { if ($("connection").dataset.state === "resynced") setConnection("live", "Live"); }, 4000);
        state.resynced = false;
      } else {
        setConnection("live", "Live");
      }
      break;
    case "outcome":
      showOutcome(event.data);
      break;
    case "resync":
      state.staging = new Map();
      state.lastId = null;
      state.resynced = true;
      break;
    default:
      break;
  }
  if (!state.staging && event.event !== "heartbeat" && $("connection").dataset.state === "reconnecting") {
    setConnection("live", "Live");
  }
}

// ---- rendering ----------------------------------------------------------------------------
function compare(a, b) {
  const sort = $("sort").value;
  const descending = sort.startsWith("-");
  const field = descending ? sort.slice(1) : sort;
  const key = (t) => field === "dueDate" ? (t.dueDate ?? Number.MAX_SAFE_INTEGER) : t[field];
  let order = 0;
  const ka = key(a), kb = key(b);
  if (ka < kb) order = -1; else if (ka > kb) order = 1;
  if (descending) order = -order;
  return order || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

function formatDate(millis) {
  if (millis == null) return null;
  return new Date(millis).toLocaleDateString(undefined, { day: "numeric", month: "short", year: "numeric" });
}

function priorityClass(p) { return p >= 70 ? "high" : p >= 40 ? "mid" : "low"; }

// A task's list item, found by its data attribute: task ids come from engines, so they are
// never used as element ids (a task called "actions" would clash with the actions panel).
function itemOf(id) {
  return $("tasks").querySelector(`li[data-id="${CSS.escape(id)}"]:not(.is-gone)`);
}

function taskItem(task, flag) {
  const li = document.createElement("li");
  li.className = "task";
  li.dataset.id = task.id;
  li.tabIndex = 0;
  li.setAttribute("aria-selected", String(state.selected === task.id));
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = task.name;
  const badge = document.createElement("span");
  badge.className = `badge ${priorityClass(task.priority)}`;
  badge.textContent = `P${task.priority}`;
  badge.title = `Priority ${task.priority}`;
  li.append(name, badge);
  if (task.description) {
    const desc = document.createElement("span");
    desc.className = "desc";
    desc.textContent = task.description;
    li.append(desc);
  }
  const meta = document.createElement("span");
  meta.className = "meta";
  const parts = [];
  if (flag) parts.push([flag, "flag"]);
  parts.push([task.assignee ? `Assigned to ${task.assignee}` : `Open to ${[...task.candidateGroups, ...task.candidateUsers].join(", ") || "nobody"}`]);
  if (task.dueDate != null) parts.push([`Due ${formatDate(task.dueDate)}`]);
  if (task.businessKey) parts.push([task.businessKey]);
  for (const [text, cls] of parts) {
    const span = document.createElement("span");
    span.textContent = text;
    if (cls) span.className = cls;
    meta.append(span);
  }
  li.append(meta);
  li.setAttribute("aria-label", `${task.name}, priority ${task.priority}${flag ? ", " + flag : ""}`);
  return li;
}

function renderAll() {
  const list = $("tasks");
  const sorted = [...state.tasks.values()].sort(compare);
  list.replaceChildren(...sorted.map((t) => taskItem(t)));
  updateCount();
  if (state.selected && !state.tasks.has(state.selected)) showGoneDetails();
}

function updateCount() {
  const n = state.tasks.size;
  $("count").textContent = `${n} ${n === 1 ? "task" : "tasks"}`;
  $("empty").hidden = n !== 0;
}

function upsert(task) {
  const known = state.tasks.has(task.id);
  // A newer version may already be here (an action's own read came first): never step back.
  if (known && state.tasks.get(task.id).version > task.version) return;
  state.tasks.set(task.id, task);
  const list = $("tasks");
  const old = itemOf(task.id);
  const item = taskItem(task, known ? "Updated" : "New");
  item.classList.add(known ? "is-updated" : "is-new");
  if (old) old.remove();
  const next = [...list.children].find((li) => !li.classList.contains("is-gone") && state.tasks.has(li.dataset.id) && compare(task, state.tasks.get(li.dataset.id)) < 0);
  list.insertBefore(item, next || null);
  setTimeout(() => item.classList.remove("is-new", "is-updated"), 2500);
  updateCount();
  if (state.selected === task.id) showDetails(task.id);
}

function remove(id) {
  if (state.staging) { state.staging.delete(id); return; }
  if (!state.tasks.delete(id)) return;
  const item = itemOf(id);
  if (item) {
    item.classList.add("is-gone");
    item.setAttribute("aria-hidden", "true");
    setTimeout(() => item.remove(), 700);
  }
  updateCount();
  if (state.selected === id) showGoneDetails();
}

// ---- details ------------------------------------------------------------------------------
function row(dl, label, value) {
  if (value == null || value === "") return;
  const dt = document.createElement("dt");
  dt.textContent = label;
  const dd = document.createElement("dd");
  dd.textContent = value;
  dl.append(dt, dd);
}

async function showDetails(id) {
  const task = state.tasks.get(id);
  if (!task) return;
  state.selected = id;
  for (const li of $("tasks").children) li.setAttribute("aria-selected", String(li.dataset.id === id));
  const panel = $("details");
  panel.hidden = false;
  $("details-title").textContent = task.name;
  const body = $("details-body");
  const dl = document.createElement("dl");
  row(dl, "Description", task.description);
  row(dl, "Priority", String(task.priority));
  row(dl, "Assignee", task.assignee || "nobody yet");
  row(dl, "Candidate groups", task.candidateGroups.join(", "));
  row(dl, "Candidate users", task.candidateUsers.join(", "));
  row(dl, "Due", formatDate(task.dueDate));
  row(dl, "Created", formatDate(task.createTime));
  row(dl, "Business key", task.businessKey);
  row(dl, "Process", task.sourceReference.processName);
  row(dl, "Application", task.sourceReference.applicationName);
  row(dl, "Version", String(task.version));
  renderActions(task);
  for (const [key, value] of Object.entries(task.payload || {})) row(dl, key, typeof value === "object" ? JSON.stringify(value) : String(value));
  body.replaceChildren(dl);
  const reference = (task.correlations || [])[0];
  if (!reference) return;
  const entrySection = document.createElement("section");
  entrySection.setAttribute("aria-label", "Data entry");
  body.append(entrySection);
  const response = await fetch(`/api/data-entries/${encodeURIComponent(reference.entryType)}/${encodeURIComponent(reference.entryId)}`,
    { headers: { Authorization: `Bearer ${state.token}` } }).catch(() => null);
  if (state.selected !== id) return;
  const title = document.createElement("h3");
  title.textContent = "Data entry";
  entrySection.append(title);
  if (!response || !response.ok) {
    const p = document.createElement("p");
    p.className = "muted";
    p.textContent = response && response.status === 404 ? "You may not see this task's business object." : "The business object could not be loaded.";
    entrySection.append(p);
    return;
  }
  const entry = await response.json();
  const edl = document.createElement("dl");
  row(edl, "Name", entry.name);
  row(edl, "Type", entry.type);
  row(edl, "State", `${entry.state} (${entry.processingType.toLowerCase().replace("_", " ")})`);
  row(edl, "Description", entry.description);
  entrySection.append(edl);
  if (entry.protocol && entry.protocol.length) {
    const ul = document.createElement("ul");
    ul.className = "protocol";
    for (const line of entry.protocol.slice(-6).reverse()) {
      const li = document.createElement("li");
      li.textContent = `${new Date(line.time).toLocaleString()} · ${line.logMessage || line.state}${line.username ? " · " + line.username : ""}`;
      ul.append(li);
    }
    entrySection.append(ul);
  }
}

function showGoneDetails() {
  $("task-actions").replaceChildren();
  const body = $("details-body");
  const p = document.createElement("p");
  p.textContent = "This task is no longer in your list (completed, deleted or handed to someone else).";
  body.replaceChildren(p);
}

function closeDetails() {
  state.selected = null;
  $("details").hidden = true;
  for (const li of $("tasks").children) li.setAttribute("aria-selected", "false");
}

// ---- wiring -------------------------------------------------------------------------------
function openFrom(event) {
  const li = event.target.closest(".task");
  if (li && !li.classList.contains("is-gone")) showDetails(li.dataset.id);
}

document.addEventListener("DOMContentLoaded", () => {
  $("tasks").addEventListener("click", openFrom);
  $("tasks").addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); openFrom(event); }
  });
  $("close-details").addEventListener("click", closeDetails);
  document.addEventListener("keydown", (event) => { if (event.key === "Escape") closeDetails(); });
  const filters = $("filters");
  filters.addEventListener("input", filtersChanged);
  filters.addEventListener("change", filtersChanged);
  filters.addEventListener("reset", () => setTimeout(filtersChanged, 0));
  filters.addEventListener("submit", (event) => event.preventDefault());
  setUpSignIn();
});
