// jobkit dashboard: live updates without a reload. Every element with data-live is refreshed
// from its JSON API URL every two seconds. Text is set with textContent only (never HTML), so
// nothing from a job's params or errors can run as script.
"use strict";

const PERIOD_MS = 2000;

// -- times and durations (the server's side: jobkit/dashboard/times.py) --------------------
// A <time data-format> shows "3 min ago" / "in 20 s" (or, for "clock", the time of day) and,
// on hover, the exact time in the browser's time zone and in UTC; an open span (data-since)
// counts on. Times are measured on the server's clock: the page says what it was.

const served = document.querySelector('meta[name="jobkit-now"]');
const clockOffset = served && !isNaN(Date.parse(served.content))
  ? Date.parse(served.content) - Date.now() : 0;

function now() {
  return Date.now() + clockOffset;
}

function parseTime(iso) {
  // at most milliseconds: not every browser reads the server's microseconds
  return new Date(String(iso).replace(/(\.\d{3})\d+/, "$1"));
}

function pad(number, width = 2) {
  return String(number).padStart(width, "0");
}

function pair(big, bigUnit, small, smallUnit) {
  return big + " " + bigUnit + (small ? " " + small + " " + smallUnit : "");
}

// as times.py's duration_text: 250 ms, 4.2 s, 42 s, 3 min 4 s, 2 h 5 min, 3 d 4 h
function durationText(seconds) {
  const s = Math.max(0, seconds);
  if (s < 1) return Math.floor(s * 1000) + " ms";
  if (s < 10) {
    const tenths = Math.floor(s * 10);
    return Math.floor(tenths / 10) + "." + (tenths % 10) + " s";
  }
  const whole = Math.floor(s);
  if (whole < 60) return whole + " s";
  if (whole < 3600) return pair(Math.floor(whole / 60), "min", whole % 60, "s");
  if (whole < 86400) return pair(Math.floor(whole / 3600), "h", Math.floor((whole % 3600) / 60), "min");
  return pair(Math.floor(whole / 86400), "d", Math.floor((whole % 86400) / 3600), "h");
}

function spanText(seconds) {
  return seconds < 0 ? "due in " + durationText(-seconds) : durationText(seconds);
}

function relativeText(seconds) {
  const size = Math.abs(seconds);
  if (size < 1) return "just now";
  let text;
  if (size < 60) text = Math.floor(size) + " s";
  else if (size < 3600) text = Math.floor(size / 60) + " min";
  else if (size < 86400) text = Math.floor(size / 3600) + " h";
  else text = Math.floor(size / 86400) + " d";
  return seconds < 0 ? text + " ago" : "in " + text;
}

function stamp(date, utc) {
  const fields = utc
    ? [date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate(), date.getUTCHours(),
       date.getUTCMinutes(), date.getUTCSeconds()]
    : [date.getFullYear(), date.getMonth(), date.getDate(), date.getHours(),
       date.getMinutes(), date.getSeconds()];
  const [year, month, day, hours, minutes, seconds] = fields;
  return year + "-" + pad(month + 1) + "-" + pad(day) + " " + pad(hours) + ":" + pad(minutes) +
    ":" + pad(seconds) + "." + pad(date.getMilliseconds(), 3);
}

function zoneText(date) {
  const east = -date.getTimezoneOffset();
  const size = Math.abs(east);
  const name = Intl.DateTimeFormat().resolvedOptions().timeZone;
  return "UTC" + (east < 0 ? "-" : "+") + pad(Math.floor(size / 60)) + ":" + pad(size % 60) +
    (name ? " (" + name + ")" : "");
}

// the exact time: in the browser's time zone, then in UTC
function exactText(date) {
  const utc = stamp(date, true) + " UTC";
  return date.getTimezoneOffset() === 0 ? utc : stamp(date, false) + " " + zoneText(date) + "\n" + utc;
}

// text and title, written only when they change (an open tooltip stays put)
function show(node, text, title) {
  if (node.textContent !== text) node.textContent = text;
  if (node.title !== title) node.title = title;
}

function renderTime(node) {
  if (!node.dateTime) return;
  const date = parseTime(node.dateTime);
  if (isNaN(date)) return;
  show(node, node.dataset.format === "clock"
    ? stamp(date, false).slice(11) : relativeText((date.getTime() - now()) / 1000),
  exactText(date));
}

function renderSpan(node) {
  const since = parseTime(node.dataset.since);
  if (isNaN(since)) return;
  const seconds = (now() - since.getTime()) / 1000;
  show(node, spanText(seconds), (seconds < 0 ? "due " : "since ") + exactText(since));
}

function renderTimes(root) {
  root.querySelectorAll("time[data-format]").forEach(renderTime);
  root.querySelectorAll("[data-since]").forEach(renderSpan);
}

function setTime(node, iso) {
  if (iso) {
    node.dateTime = iso;
    renderTime(node);
  } else {
    node.removeAttribute("datetime");
    node.removeAttribute("title");
    node.textContent = "";
  }
}

function timeNode(iso, format = "relative") {
  const node = document.createElement("time");
  node.dataset.format = format;
  setTime(node, iso);
  return node;
}

function spanNode(span) {
  if (!span) {
    const none = document.createElement("span");
    none.className = "span none";
    none.textContent = "\u2014";
    return none;
  }
  if (span.since === null) {
    const fixed = document.createElement("time");
    fixed.className = "span";
    fixed.dateTime = "PT" + span.seconds.toFixed(3) + "S";
    fixed.title = span.seconds.toFixed(3) + " s";
    fixed.textContent = durationText(span.seconds);
    return fixed;
  }
  const open = document.createElement("span");
  open.className = "span open";
  open.dataset.since = span.since;
  renderSpan(open);
  return open;
}

function nodeCell(row, node) {
  const td = cell(row, "");
  td.appendChild(node);
  return td;
}

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
    if (wait) wait.textContent = data.oldest_wait === null ? "none" : durationText(data.oldest_wait);
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
        nodeCell(tr, timeNode(worker.started_at));
        nodeCell(tr, timeNode(worker.last_seen_at));
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
      nodeCell(tr, timeNode(job.started_at));
      nodeCell(tr, spanNode(job.duration));
      const td = cell(tr, "");
      if (job.progress !== null) {
        const bar = document.createElement("progress");
        bar.max = 1;
        bar.value = job.progress;
        td.appendChild(bar);
      }
      return tr;
    });
    replaceRows(tbody, rows, "Nothing is running.", 6);
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
      nodeCell(tr, timeNode(job.created_at));
      nodeCell(tr, spanNode(job.wait));
      nodeCell(tr, spanNode(job.duration));
      const code = document.createElement("code");
      code.textContent = JSON.stringify(job.params);
      cell(tr, "").appendChild(code);
      return tr;
    });
    replaceRows(element.querySelector("tbody"), rows, "No job matches.", 9);
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
      } else if (node.dataset.format) {
        setTime(node, value);
      } else if (key === "wait" || key === "duration") {
        node.replaceChildren(spanNode(value));
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
      nodeCell(tr, timeNode(attempt.started_at));
      nodeCell(tr, timeNode(attempt.finished_at));
      nodeCell(tr, spanNode(attempt.wait));
      nodeCell(tr, spanNode(attempt.duration));
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
    replaceRows(tbody, rows, "Not run yet.", 8);
    const logs = document.querySelector("#logs");
    if (logs && data.logs.length) {
      logs.replaceChildren(...data.logs.map((line) => {
        const div = document.createElement("div");
        div.className = "line level-" + line.level.toLowerCase();
        for (const [name, text] of [["attempt", "#" + line.attempt], ["", " "], ["at", line.at],
                                     ["", " "], ["level", line.level], ["", " "],
                                     ["message", line.message]]) {
          if (name === "at") {
            div.appendChild(timeNode(text, "clock"));
            continue;
          }
          const span = document.createElement("span");
          if (name) span.className = name;
          span.textContent = text;
          div.appendChild(span);
        }
        return div;
      }));
    }
  },
  workflow(element, data) {
    // one pass over the drawn steps: a 1,000-step graph is recoloured in one go
    const boxes = new Map();
    element.querySelectorAll("g[data-step]").forEach((node) => boxes.set(node.dataset.step, node));
    for (const [jobId, status] of Object.entries(data.statuses)) {
      const node = boxes.get(jobId);
      const name = "wf-step status-" + status;
      if (!node || node.getAttribute("class") === name) continue;
      node.setAttribute("class", name);
      const text = node.querySelector(".wf-status");
      if (text) text.textContent = status;
    }
    const counts = element.querySelector("[data-field=counts]");
    if (counts) {
      counts.replaceChildren(...Object.entries(data.counts).flatMap(([status, count]) => {
        const span = document.createElement("span");
        span.className = "status status-" + status;
        span.textContent = status + " " + count;
        return [span, " "];
      }));
    }
    element.querySelectorAll("[data-unfinished]").forEach((node) => { node.hidden = data.finished; });
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
  renderTimes(document);
  setInterval(() => renderTimes(document), 1000);
  document.querySelectorAll("[data-live]").forEach((element) => {
    setTimeout(() => refresh(element), PERIOD_MS);
  });
  // charts are images drawn by the server: fetch them again now and then
  document.querySelectorAll("img[data-refresh]").forEach((image) => {
    const source = image.src.split("?")[0];
    setInterval(() => { image.src = source + "?t=" + Date.now(); }, 5 * PERIOD_MS);
  });
});
