// The Reports screen: while a report is queued or running, poll the caller's runs and move
// each progress bar; a finished one gets its download link (views/reports.py, status).
(function () {
  "use strict";
  var table = document.querySelector(".crm-reports-table");
  if (!table) { return; }
  var url = table.getAttribute("data-status-url");
  var downloadLabel = "⬇";

  function busy() {
    return table.querySelector('tr[data-status="QUEUED"], tr[data-status="RUNNING"]') !== null;
  }

  function update(run) {
    var row = table.querySelector('tr[data-id="' + run.id + '"]');
    if (!row) { return; }
    row.setAttribute("data-status", run.status);
    var bar = row.querySelector(".progress-bar");
    bar.style.width = run.progress + "%";
    bar.textContent = run.progress + "%";
    bar.setAttribute("data-progress", String(run.progress));
    bar.setAttribute("aria-valuenow", String(run.progress));
    if (run.status === "FAILED") { bar.classList.add("progress-bar-danger"); }
    row.querySelector(".crm-report-state").textContent = (run.statusLabel || run.status) + (run.error ? ": " + run.error : "");
    var cell = row.querySelector(".crm-report-link");
    if (run.downloadUrl && !cell.querySelector("a")) {
      var link = document.createElement("a");
      link.className = "crm-report-download";
      link.href = run.downloadUrl;
      link.textContent = downloadLabel + " " + (table.getAttribute("data-download-label") || "Download");
      cell.appendChild(link);
    }
  }

  function poll() {
    if (!busy()) { return; }
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : { data: [] }; })
      .then(function (body) { (body.data || []).forEach(update); })
      .catch(function () { /* try again on the next round */ })
      .then(function () { window.setTimeout(poll, 1500); });
  }
  window.setTimeout(poll, 1000);
}());
