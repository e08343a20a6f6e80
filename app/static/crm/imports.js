/* The import screen's progress bar: polls the import's status (JSON) and moves the bar; reloads when the run ends. */
(function () {
  "use strict";
  var box = document.querySelector(".crm-import-progress[data-status-url]");
  if (!box) { return; }
  var bar = box.querySelector(".crm-import-bar");
  var done = box.querySelector(".crm-import-done");
  function show(state) {
    var pct = state.total ? Math.floor(100 * state.done / state.total) : 0;
    bar.style.width = pct + "%";
    bar.setAttribute("aria-valuenow", String(state.done));
    bar.textContent = state.done + " / " + state.total;
    if (done) { done.textContent = String(state.done); }
  }
  function poll() {
    fetch(box.getAttribute("data-status-url"), { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (resp) { return resp.ok ? resp.json() : null; })
      .then(function (state) {
        if (!state) { window.setTimeout(poll, 2000); return; }
        show(state);
        if (state.status === "queued" || state.status === "running") {
          window.setTimeout(poll, 500);
        } else {
          window.location.reload();
        }
      })
      .catch(function () { window.setTimeout(poll, 2000); });
  }
  show({ done: Number(bar.getAttribute("aria-valuenow")) || 0, total: Number(bar.getAttribute("aria-valuemax")) || 0 });
  poll();
}());
