// mailops console: the only script. Refreshes live regions, ticks all rows, reloads pages that wait.
// Written for this project (MIT, like the rest of mailops); nothing vendored.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-live]").forEach(function (region) {
    setInterval(function () {
      fetch(region.dataset.live, {credentials: "same-origin", cache: "no-store"})
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) { region.innerHTML = html; })
        .catch(function () { region.classList.add("stale"); });
    }, 2000);
  });
  var all = document.getElementById("tick-all");
  if (all) {
    all.addEventListener("change", function () {
      document.querySelectorAll("input.tick").forEach(function (box) { box.checked = all.checked; });
    });
  }
  var reload = document.querySelector("[data-reload]");
  if (reload) { setTimeout(function () { location.reload(); }, parseInt(reload.dataset.reload, 10)); }
  document.querySelectorAll("button.danger").forEach(function (button) {
    button.addEventListener("click", function (e) {
      if (!confirm("This cannot be undone. Continue?")) { e.preventDefault(); }
    });
  });
});
