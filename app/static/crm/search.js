/* The navbar's global search (crm/_nav_search.html): a grouped dropdown of suggestions.
   Typing asks /search/suggest (debounced; an older answer never replaces a newer one);
   ArrowDown/ArrowUp move through the hits, Enter opens the highlighted one (or, with none
   highlighted, submits the form to the results page), Escape closes. */
"use strict";
(function () {
  var form = document.querySelector(".crm-search-form");
  if (!form) { return; }
  var input = form.querySelector("input[name=q]");
  var box = form.querySelector(".crm-search-results");
  var url = form.getAttribute("data-suggest-url");
  var timer = null, seq = 0, active = -1;

  function options() { return box.querySelectorAll("[role=option]"); }

  function close() {
    box.hidden = true;
    box.textContent = "";
    active = -1;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
  }

  function highlight(index) {
    var opts = options();
    if (!opts.length) { return; }
    active = (index + opts.length) % opts.length;
    opts.forEach(function (el, i) {
      el.classList.toggle("active", i === active);
      el.setAttribute("aria-selected", i === active ? "true" : "false");
    });
    input.setAttribute("aria-activedescendant", opts[active].id);
    opts[active].scrollIntoView({block: "nearest"});
  }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text) { node.textContent = text; }
    return node;
  }

  function render(data) {
    box.textContent = "";
    active = -1;
    var n = 0;
    data.groups.forEach(function (group) {
      if (!group.items.length) { return; }
      var section = el("div", "crm-search-group");
      section.setAttribute("role", "group");
      section.setAttribute("data-kind", group.kind);
      var heading = el("div", "crm-search-heading", group.label);
      heading.id = "crm-search-h-" + group.kind;
      section.setAttribute("aria-labelledby", heading.id);
      section.appendChild(heading);
      group.items.forEach(function (item) {
        var a = el("a", "crm-search-option");
        a.href = item.url;
        a.id = "crm-search-opt-" + (n++);
        a.setAttribute("role", "option");
        a.setAttribute("tabindex", "-1");
        a.appendChild(el("span", "crm-search-title", item.title));
        var detail = [item.detail, item.when].filter(Boolean).join(" · ");
        if (detail) { a.appendChild(el("small", "crm-search-detail", detail)); }
        section.appendChild(a);
      });
      box.appendChild(section);
    });
    if (!n) { box.appendChild(el("div", "crm-search-empty", form.getAttribute("data-empty-text"))); }
    var all = el("a", "crm-search-all", form.getAttribute("data-all-text"));
    all.href = data.all;
    box.appendChild(all);
    box.hidden = false;
    input.setAttribute("aria-expanded", "true");
  }

  function ask() {
    var q = input.value.trim();
    if (!q) { close(); return; }
    var mine = ++seq;
    fetch(url + "?q=" + encodeURIComponent(q), {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (resp) { return resp.ok ? resp.json() : null; })
      .then(function (data) { if (mine === seq && data) { render(data); } })
      .catch(function () { /* the form still submits to the results page */ });
  }

  input.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(ask, 150);
  });
  input.addEventListener("keydown", function (ev) {
    if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      if (box.hidden) { ask(); return; }
      ev.preventDefault();
      highlight(active + (ev.key === "ArrowDown" ? 1 : -1));
    } else if (ev.key === "Enter") {
      var opts = options();
      if (!box.hidden && active >= 0 && opts[active]) {
        ev.preventDefault();
        window.location.assign(opts[active].href);
      }
    } else if (ev.key === "Escape") {
      close();
    }
  });
  document.addEventListener("click", function (ev) {
    if (!form.contains(ev.target)) { close(); }
  });
})();
