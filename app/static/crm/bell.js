/* The navbar notification bell (crm/_nav_bell.html): unread count, the newest notifications,
   read marks as POSTs carrying the CSRF token, and live updates from the notification stream.
   Everything is built with textContent: a notification's text is never parsed as HTML. */
"use strict";
(function () {
  var bell = document.getElementById("crm-bell");
  if (!bell || !window.fetch) { return; }
  var data = bell.dataset;
  var badge = bell.querySelector(".crm-bell-count");
  var list = bell.querySelector(".crm-bell-items");
  var readAll = bell.querySelector(".crm-bell-read-all");

  function url(template, id) { return template.replace("ID", encodeURIComponent(id)); }

  // On a phone the navbar collapses behind its toggle: the toggle shows the count too.
  var toggle = document.querySelector(".navbar-toggle");
  var toggleBadge = null;
  if (toggle) {
    toggleBadge = document.createElement("span");
    toggleBadge.className = "crm-bell-count crm-bell-toggle-count badge";
    toggleBadge.hidden = true;
    toggle.appendChild(toggleBadge);
  }

  function setCount(count) {
    [badge, toggleBadge].forEach(function (el) {
      if (!el) { return; }
      el.textContent = count > 99 ? "99+" : String(count);
      el.hidden = !count;
    });
    bell.dataset.count = String(count);
  }

  function hidden(name, value) {
    var input = document.createElement("input");
    input.type = "hidden";
    input.name = name;
    input.value = value;
    return input;
  }

  function postForm(action, cls) {
    var form = document.createElement("form");
    form.method = "post";
    form.action = action;
    form.className = cls;
    form.appendChild(hidden("csrf_token", data.csrf));
    return form;
  }

  function item(note) {
    var li = document.createElement("li");
    li.className = "crm-bell-item" + (note.isRead ? "" : " crm-bell-unread");
    li.dataset.id = note.id;
    // Opening is a POST: it marks the notification read, then the server sends the browser to its screen.
    var open = postForm(url(data.open, note.id), "crm-bell-open");
    var button = document.createElement("button");
    button.type = "submit";
    button.className = "btn btn-link crm-bell-link";
    var kind = document.createElement("span");
    kind.className = "crm-bell-type";
    kind.textContent = note.typeLabel;
    var title = document.createElement("span");
    title.className = "crm-bell-title";
    title.textContent = note.title;
    var when = document.createElement("span");
    when.className = "crm-bell-time";
    when.textContent = note.createdAt;
    button.appendChild(kind);
    button.appendChild(title);
    button.appendChild(when);
    open.appendChild(button);
    li.appendChild(open);
    if (!note.isRead) {
      var mark = postForm(url(data.read, note.id), "crm-bell-mark");
      var markButton = document.createElement("button");
      markButton.type = "submit";
      markButton.className = "btn btn-default btn-xs";
      markButton.title = data.markRead;
      markButton.textContent = data.markRead;
      mark.appendChild(markButton);
      li.appendChild(mark);
    }
    return li;
  }

  function render(feed) {
    setCount(feed.count);
    list.textContent = "";
    if (!feed.items.length) {
      var empty = document.createElement("li");
      empty.className = "crm-bell-empty";
      empty.textContent = data.empty;
      list.appendChild(empty);
    }
    feed.items.forEach(function (note) { list.appendChild(item(note)); });
    readAll.hidden = !feed.count;
  }

  function refresh() {
    return fetch(data.feed, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (resp) { return resp.ok ? resp.json() : null; })
      .then(function (feed) { if (feed) { render(feed); } })
      .catch(function () { /* the next event or page load tries again */ });
  }

  function post(action) {
    return fetch(action, {
      method: "POST",
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRFToken": data.csrf }
    }).then(refresh);
  }

  // "Mark read" and "mark all read" stay on the page; a click inside the menu keeps it open.
  bell.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.classList.contains("crm-bell-mark") || form.classList.contains("crm-bell-read-all")) {
      event.preventDefault();
      post(form.action);
    }
  });
  bell.querySelector(".crm-bell-menu").addEventListener("click", function (event) {
    if (!event.target.closest(".crm-bell-open")) { event.stopPropagation(); }
  });

  // Live: the stream says "something new for you"; the bell then reads its feed again. When the
  // stream drops (a restart, its periodic re-check of the session) the bell reconnects, waiting
  // longer after each failure (2 s up to a minute), and reads its feed again once reconnected.
  var retry = 2000;
  function listen() {
    if (!data.stream || !window.EventSource) { return; }
    var source = new EventSource(data.stream, { withCredentials: true });
    source.addEventListener("notification", refresh);
    source.addEventListener("open", function () { retry = 2000; bell.dataset.live = "1"; refresh(); });
    source.addEventListener("error", function () {
      bell.dataset.live = "0";
      source.close();
      window.setTimeout(listen, retry);
      retry = Math.min(retry * 2, 60000);
    });
  }

  refresh();
  listen();
})();
