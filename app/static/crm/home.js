/* The role home pages: trend and breakdown charts (Chart.js, vendored) from data-chart attributes. */
"use strict";
(function () {
  var COLOURS = ["#337ab7", "#5cb85c", "#f0ad4e", "#d9534f", "#5bc0de", "#777777"];

  function lineChart(canvas, weeks, block) {
    return new window.Chart(canvas, {
      type: "line",
      data: {
        labels: weeks,
        datasets: block.labels.map(function (label, i) {
          return { label: label, data: block.series[i], borderColor: COLOURS[i], backgroundColor: COLOURS[i], tension: 0.2 };
        })
      },
      options: { responsive: true, maintainAspectRatio: false, animation: false, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } }
    });
  }

  function barChart(canvas, data) {
    return new window.Chart(canvas, {
      type: "bar",
      data: { labels: data.labels, datasets: [{ label: data.title, data: data.series, backgroundColor: COLOURS }] },
      options: { indexAxis: "y", responsive: true, maintainAspectRatio: false, animation: false,
        plugins: { legend: { display: false } }, scales: { x: { beginAtZero: true, ticks: { precision: 0 } } } }
    });
  }

  function start() {
    if (!window.Chart) { return; }
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var data = JSON.parse(canvas.getAttribute("data-chart"));
      var kind = canvas.getAttribute("data-chart-kind");
      if (kind === "bar") {
        barChart(canvas, data);
      } else {
        lineChart(canvas, data.weeks, data[kind]);
      }
      canvas.setAttribute("data-rendered", "1");
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
