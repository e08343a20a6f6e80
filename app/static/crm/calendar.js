/* The calendar page (crm/calendar.html): FullCalendar over /calendar/feed; a drop POSTs /calendar/move. */
(function () {
  "use strict";
  var el = document.getElementById("crm-calendar");
  if (!el || !window.FullCalendar) { return; }
  var errorBox = document.querySelector(".crm-calendar-error");

  function showError(text) {
    if (!errorBox) { return; }
    errorBox.textContent = text;
    errorBox.classList.remove("hidden");
  }

  function move(info) {
    var props = info.event.extendedProps;
    if (errorBox) { errorBox.classList.add("hidden"); }
    fetch(el.dataset.move, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": el.dataset.csrf },
      body: JSON.stringify({ kind: props.kind, id: props.recordId, start: info.event.start.toISOString() })
    }).then(function (resp) {
      return resp.json().catch(function () { return {}; }).then(function (body) {
        if (!resp.ok) {
          info.revert();
          showError(el.dataset.refused + " (" + resp.status + "): " + (body.message || ""));
        } else {
          el.dataset.lastMove = body.id + " " + body.start;
        }
      });
    }).catch(function () {
      info.revert();
      showError(el.dataset.refused);
    });
  }

  // A phone gets the week as a list (a month grid is unreadable at 375 px); the grids stay a click away.
  var narrow = window.matchMedia("(max-width: 575px)").matches;
  var calendar = new FullCalendar.Calendar(el, {
    initialView: narrow ? "listWeek" : "dayGridMonth",
    locale: el.dataset.locale === "en" ? "en" : "ja",
    headerToolbar: narrow
      ? { left: "prev,next", center: "title", right: "listWeek,timeGridDay,dayGridMonth" }
      : { left: "prev,next today", center: "title", right: "dayGridMonth,timeGridWeek,timeGridDay,listWeek" },
    height: "auto",
    nowIndicator: true,
    eventDurationEditable: false,
    eventStartEditable: true,
    editable: false,
    events: { url: el.dataset.feed, extraParams: { who: el.dataset.who } },
    eventDidMount: function (info) {
      var customer = info.event.extendedProps.customer;
      if (customer) { info.el.title = customer + ": " + info.event.title; }
      info.el.dataset.eventId = info.event.id;
    },
    eventDisplay: "block",
    eventDrop: move,
    eventResize: function (info) { info.revert(); },
    loading: function (busy) { el.dataset.loading = busy ? "1" : "0"; }
  });
  calendar.render();
  window.crmCalendar = calendar;
}());
