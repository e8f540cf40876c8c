// taskpool's web tasklist: actions on the selected task (claim, give back, complete) and their
// outcomes. Loaded after app.js, whose state and helpers it uses.
"use strict";

// Each action is sent with ?wait: the answer comes once the engine decided and this user's
// view shows the result, which is then taken into the list at once (never a stale state).
const ACTIONS = {
  claim: ["Claim", "Claiming…", "Claimed."],
  unclaim: ["Give back", "Giving back…", "Given back."],
  complete: ["Complete", "Completing…", "Completed."],
};

function renderActions(task) {
  const me = $("user").value;
  const names = task.assignee === me ? ["complete", "unclaim"] : task.assignee ? [] : ["claim"];
  $("task-actions").replaceChildren(...names.map((name) => {
    const button = document.createElement("button");
    button.type = "button";
    button.id = `action-${name}`;
    button.textContent = ACTIONS[name][0];
    button.addEventListener("click", () => act(task.id, name, button));
    return button;
  }));
}

async function act(id, name, button) {
  for (const other of $("task-actions").children) other.disabled = true;
  button.textContent = ACTIONS[name][1];
  $("action-status").textContent = ACTIONS[name][1];
  const response = await fetch(`/api/tasks/${encodeURIComponent(id)}/${name}?wait=10s`, {
    method: "POST",
    headers: { Authorization: `Bearer ${state.token}`, "Content-Type": "application/json" },
    body: name === "complete" ? "{}" : undefined,
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

