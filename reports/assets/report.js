// Progressive enhancement only: the report is complete without this script.
// It collapses evidence of passing steps and adds a "problems only" filter;
// printing re-opens everything.
(function () {
  "use strict";
  var filters = document.getElementById("filters");
  if (filters) {
    filters.hidden = false;
    filters.addEventListener("click", function (e) {
      var b = e.target.closest("button[data-filter]");
      if (!b) return;
      var only = b.getAttribute("data-filter") === "problems";
      document.body.classList.toggle("hide-passing", only);
      filters.querySelectorAll("button").forEach(function (x) {
        x.setAttribute("aria-pressed", String(x === b));
      });
    });
  }
  document.querySelectorAll("tr.detail:not(.failing) details").forEach(function (d) {
    d.open = false;
  });
  window.addEventListener("beforeprint", function () {
    document.querySelectorAll("details").forEach(function (d) { d.open = true; });
  });
})();
