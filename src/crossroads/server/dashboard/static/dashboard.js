// Draws every <canvas data-chart="ID"> from the JSON in <script type="application/json" id="ID">,
// and lets htmx show the 400 page a bad filter gets instead of ignoring it.
(function () {
  "use strict";
  function draw(root) {
    root.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var source = document.getElementById(canvas.dataset.chart);
      if (!source || canvas.dataset.drawn) return;
      var spec = JSON.parse(source.textContent);
      canvas.dataset.drawn = "1";
      new Chart(canvas.getContext("2d"), {
        type: spec.type,
        data: {
          labels: spec.labels,
          datasets: spec.datasets.map(function (d) {
            return {
              label: d.label, data: d.data, borderColor: d.color, backgroundColor: d.color,
              fill: false, pointRadius: 0, borderWidth: 2, lineTension: 0
            };
          })
        },
        options: {
          animation: false, responsive: true, maintainAspectRatio: false,
          legend: { position: "bottom" },
          scales: {
            xAxes: [{ stacked: spec.stacked, ticks: { maxTicksLimit: 12 } }],
            yAxes: [{ stacked: spec.stacked, ticks: { beginAtZero: true } }]
          }
        }
      });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  document.addEventListener("htmx:afterSwap", function (event) { draw(event.target); });
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.xhr.status === 400 || event.detail.xhr.status === 404) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
})();
