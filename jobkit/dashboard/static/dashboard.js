// jobkit dashboard: live updates without a reload. Every element with data-live is refreshed
// from its JSON API URL every two seconds. Text is set with textContent only (never HTML), so
// nothing from a job's params or errors can run as script.
"use strict";

const PERIOD_MS = 2000;

function cell(row, text, href) {
  const td = document.createElement("td");
  if (href) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    td.appendChild(a);
  } else {
    td.textContent = text;
  }
  row.appendChild(td);
  return td;
}

function statusCell(row, status) {
  const td = document.createElement("td");
  const span = document.createElement("span");
  span.className = "status status-" + status;
  span.dataset.field = "status";
  span.textContent = status;
  td.appendChild(span);
  row.appendChild(td);
}

function replaceRows(tbody, rows, empty, columns) {
  tbody.replaceChildren();
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    tr.className = "empty";
    const td = cell(tr, empty);
    td.colSpan = columns;
    tbody.appendChild(tr);
    return;
  }
  rows.forEach((tr) => tbody.appendChild(tr));
}

const render = {
  overview(element, data) {
    for (const [status, count] of Object.entries(data.counts)) {
      const number = element.querySelector('[data-count="' + status + '"]');
      if (number) number.textContent = String(count);
    }
    const wait = document.querySelector("[data-oldest-wait]");
    if (wait) wait.textContent = data.oldest_wait === null ? "none" : data.oldest_wait.toFixed(1) + " s";
    const workers = document.querySelector("#workers tbody");
    if (workers) {
      const rows = data.workers.map((worker) => {
        const tr = document.createElement("tr");
        tr.className = worker.alive ? "alive" : "lost";
        const id = cell(tr, worker.worker_id);
        if (!worker.alive) {
          const badge = document.createElement("span");
          badge.className = "status status-failed";
          badge.textContent = "lost";
          id.append(" ", badge);
        }
        cell(tr, worker.hostname);
        cell(tr, String(worker.pid));
        cell(tr, worker.started_at);
        cell(tr, worker.last_seen_at);
        if (worker.job) {
          cell(tr, "#" + worker.job.id + " " + worker.job.name + "." + worker.job.method,
               "/jobs/" + encodeURIComponent(worker.job.id));
        } else {
          cell(tr, "idle");
        }
        return tr;
      });
      replaceRows(workers, rows, "No worker is running.", 6);
    }
    const tbody = document.querySelector("#running tbody");
    if (!tbody) return;
    const rows = data.running.map((job) => {
      const tr = document.createElement("tr");
      cell(tr, "#" + job.id, "/jobs/" + encodeURIComponent(job.id));
      cell(tr, job.name + "." + job.method);
      cell(tr, job.worker_id || "");
      cell(tr, job.started_at || "");
      const td = cell(tr, "");
      if (job.progress !== null) {
        const bar = document.createElement("progress");
        bar.max = 1;
        bar.value = job.progress;
        td.appendChild(bar);
      }
      return tr;
    });
    replaceRows(tbody, rows, "Nothing is running.", 5);
  },
  jobs(element, data) {
    const total = document.querySelector("[data-total]");
    if (total) total.textContent = data.total_text;
    const rows = data.jobs.map((job) => {
      const tr = document.createElement("tr");
      tr.dataset.job = job.id;
      cell(tr, "#" + job.id, "/jobs/" + encodeURIComponent(job.id));
      cell(tr, job.name + "." + job.method);
      statusCell(tr, job.status);
      cell(tr, String(job.priority));
      cell(tr, job.attempts + "/" + job.max_attempts);
      cell(tr, job.created_at || "");
      const code = document.createElement("code");
      code.textContent = JSON.stringify(job.params);
      cell(tr, "").appendChild(code);
      return tr;
    });
    replaceRows(element.querySelector("tbody"), rows, "No job matches.", 7);
  },
  job(element, data) {
    const job = data.job;
    element.querySelectorAll("[data-field]").forEach((node) => {
      const key = node.dataset.field;
      const value = job[key];
      if (key === "progress") {
        node.value = value === null ? 0 : value;
      } else if (key === "status") {
        node.textContent = value;
        node.className = "status status-" + value;
      } else if (key === "result") {
        node.textContent = JSON.stringify(value, null, 2);
      } else {
        node.textContent = value === null || value === undefined ? "" : String(value);
      }
    });
    // the actions that fit the new status, without a reload
    document.querySelectorAll("[data-when]").forEach((node) => {
      node.hidden = !node.dataset.when.split(" ").includes(job.status);
    });
    const tbody = document.querySelector("#attempts tbody");
    if (!tbody) return;
    const rows = data.attempts.map((attempt) => {
      const tr = document.createElement("tr");
      cell(tr, String(attempt.attempt));
      cell(tr, attempt.worker_id || "");
      cell(tr, attempt.started_at || "");
      cell(tr, attempt.finished_at || "");
      cell(tr, attempt.outcome || "running");
      const td = cell(tr, "");
      if (attempt.error) {
        const details = document.createElement("details");
        const summary = document.createElement("summary");
        summary.textContent = attempt.error;
        const pre = document.createElement("pre");
        pre.textContent = attempt.traceback || "";
        details.append(summary, pre);
        td.appendChild(details);
      }
      return tr;
    });
    replaceRows(tbody, rows, "Not run yet.", 6);
    const logs = document.querySelector("#logs");
    if (logs && data.logs.length) {
      logs.replaceChildren(...data.logs.map((line) => {
        const div = document.createElement("div");
        div.className = "line level-" + line.level.toLowerCase();
        for (const [name, text] of [["attempt", "#" + line.attempt], ["", " "], ["", line.at],
                                     ["", " "], ["level", line.level], ["", " "],
                                     ["message", line.message]]) {
          const span = document.createElement("span");
          if (name) span.className = name;
          span.textContent = text;
          div.appendChild(span);
        }
        return div;
      }));
    }
  },
};

function refresh(element) {
  const kind = element.dataset.liveKind;
  fetch(element.dataset.live, { headers: { Accept: "application/json" }, credentials: "same-origin" })
    .then((response) => (response.ok ? response.json() : null))
    .then((data) => { if (data && render[kind]) render[kind](element, data); })
    .catch(() => {})
    .finally(() => setTimeout(() => refresh(element), PERIOD_MS));
}

// a button with data-confirm asks first (no inline script: the CSP allows none)
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-confirm]");
  if (button && !window.confirm(button.dataset.confirm)) event.preventDefault();
});

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live]").forEach((element) => {
    setTimeout(() => refresh(element), PERIOD_MS);
  });
  // charts are images drawn by the server: fetch them again now and then
  document.querySelectorAll("img[data-refresh]").forEach((image) => {
    const source = image.src.split("?")[0];
    setInterval(() => { image.src = source + "?t=" + Date.now(); }, 5 * PERIOD_MS);
  });
});
