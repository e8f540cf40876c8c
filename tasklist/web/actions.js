// taskpool's web tasklist: actions on the selected task (claim, give back, complete, defer,
// undefer, hand over) and their outcomes. Loaded after app.js, whose state and helpers it uses.
"use strict";

// Each action is sent with ?wait: the answer comes once the engine decided and this user's
// view shows the result, which is then taken into the list at once (never a stale state).
const ACTIONS = {
  claim: ["Claim", "Claiming…", "Claimed."],
  unclaim: ["Give back", "Giving back…", "Given back."],
  complete: ["Complete", "Completing…", "Completed."],
  defer: ["Defer", "Deferring…", "Deferred."],
  undefer: ["Undefer", "Undeferring…", "Undeferred."],
  assign: ["Hand over", "Handing over…", "Handed over."],
};

// `choice` ([id suffix, label]) tells two buttons of one action apart (approve, reject).
function actionButton(task, name, body, choice) {
  const button = document.createElement("button");
  button.type = "button";
  button.id = choice ? `action-${name}-${choice[0]}` : `action-${name}`;
  button.textContent = choice ? choice[1] : ACTIONS[name][0];
  button.addEventListener("click", () => act(task.id, name, button, body ? body() : undefined));
  return button;
}

// A form that asks for a decision (an approval: its key ends in "approve", as the demo's
// does) is completed with the user's choice; other tasks are completed as they are.
function completeButtons(task) {
  if (!/(^|[/:])approve$/.test(task.formKey || "")) {
    return [actionButton(task, "complete", () => ({}))];
  }
  return [
    actionButton(task, "complete", () => ({ approved: true }), ["approve", "Approve"]),
    actionButton(task, "complete", () => ({ approved: false }), ["reject", "Reject"]),
  ];
}

// A labelled input and the button that sends its value.
function withInput(task, name, label, type, body) {
  const wrap = document.createElement("span");
  const input = document.createElement("input");
  input.type = type;
  input.id = `${name}-value`;
  input.setAttribute("aria-label", label);
  if (type === "text") input.placeholder = "user id";
  wrap.append(input, actionButton(task, name, () => body(input.value)));
  return wrap;
}

function renderActions(task) {
  // With development sign-in the page knows who is signed in; with a bearer token it does not,
  // so an assigned task gets the assignee's actions and the server decides (403 for others).
  const me = state.devUsers ? $("user").value : null;
  const mine = me ? task.assignee === me : Boolean(task.assignee);
  const open = !task.assignee;
  const items = [];
  if (open) items.push(actionButton(task, "claim"));
  if (mine) items.push(...completeButtons(task), actionButton(task, "unclaim"));
  if (mine || open) {
    if (task.followUpDate) items.push(actionButton(task, "undefer"));
    items.push(withInput(task, "defer", "Defer until", "date",
      (day) => ({ followUpDate: day ? `${day}T08:00:00Z` : "" })));
    items.push(withInput(task, "assign", "Hand over to (user id)", "text",
      (user) => ({ assignee: user.trim() })));
  }
  $("task-actions").replaceChildren(...items);
}

async function act(id, name, button, body) {
  for (const other of $("task-actions").querySelectorAll("button, input")) other.disabled = true;
  button.textContent = ACTIONS[name][1];
  $("action-status").textContent = ACTIONS[name][1];
  const response = await fetch(`/api/tasks/${encodeURIComponent(id)}/${name}?wait=10s`, {
    method: "POST",
    headers: { Authorization: `Bearer ${state.token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  }).catch(() => null);
  const answer = response ? await response.json().catch(() => ({})) : {};
  if (response && response.status === 200) {
    $("action-status").textContent = ACTIONS[name][2];
    // A completed task is out of every list; others are read again as the view has them.
    if (name === "complete") remove(id);
    else await takeFresh(id);
  } else if (response && response.status === 202) {
    $("action-status").textContent = "Sent; the engine has not answered yet.";
  } else {
    $("action-status").textContent = answer.message || "The action could not be sent; try again.";
  }
  const task = state.tasks.get(id);
  if (state.selected === id && task) renderActions(task);
}

// The task as this user's view has it now: newer than the stream may have delivered yet.
async function takeFresh(id) {
  const response = await fetch(`/api/tasks/${encodeURIComponent(id)}`,
    { headers: { Authorization: `Bearer ${state.token}` } }).catch(() => null);
  if (response && response.status === 200) upsert(await response.json());
  else if (response && response.status === 404 && state.tasks.has(id)) remove(id);
}

function showOutcome(outcome) {
  if (state.selected !== outcome.taskId || outcome.result !== "rejected") return;
  $("action-status").textContent = `Refused: ${outcome.reason || "the engine refused it"}`;
}

