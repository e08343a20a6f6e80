/* Searchable related-field inputs (views/autocomplete.py): every input.crm-autocomplete becomes a
   tom-select asking its data-autocomplete URL (the scoped endpoint) as the user types. The list
   page's filter form adds its inputs later (FAB's ab_filters.js), so new ones are watched for. */
"use strict";
(function () {
  function fetchJson(url, callback) {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : { data: [] }; })
      .then(function (body) { callback(body.data || []); })
      .catch(function () { callback([]); });
  }

  function withParam(url, key, value) {
    return url + (url.indexOf("?") >= 0 ? "&" : "?") + key + "=" + encodeURIComponent(value);
  }

  function enhance(input) {
    if (input.tomselect || typeof TomSelect === "undefined") return;
    var source = input.getAttribute("data-autocomplete");
    var current = input.value;
    var label = input.getAttribute("data-label");
    var options = current && label ? [{ value: current, text: label }] : [];
    var ts = new TomSelect(input, {
      maxItems: 1,
      create: false,
      options: options,
      items: options.length ? [current] : [],
      valueField: "value",
      labelField: "text",
      searchField: ["text"],
      placeholder: input.getAttribute("data-placeholder") || "",
      preload: "focus",
      loadThrottle: 250,
      load: function (query, callback) { fetchJson(withParam(source, "q", query), callback); },
    });
    // A filter from the URL (or a form re-shown) names an id only: ask for its label, in scope.
    if (current && !label) {
      fetchJson(withParam(source, "id", current), function (rows) {
        if (rows.length) { ts.addOption(rows[0]); ts.setValue(rows[0].value, true); }
        else { ts.clear(true); }
      });
    }
  }

  function scan(root) {
    (root.querySelectorAll ? root.querySelectorAll("input.crm-autocomplete") : []).forEach(enhance);
  }

  document.addEventListener("DOMContentLoaded", function () {
    scan(document);
    new MutationObserver(function (changes) {
      changes.forEach(function (change) {
        change.addedNodes.forEach(function (node) {
          if (node.nodeType !== 1) return;
          if (node.matches && node.matches("input.crm-autocomplete")) enhance(node);
          else scan(node);
        });
      });
    }).observe(document.body, { childList: true, subtree: true });
  });
})();
