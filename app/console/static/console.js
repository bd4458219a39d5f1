// MeCove console: the only script of the pages (no inline script runs under the CSP).
// 1. An element with data-refresh reloads its content from that URL every data-interval-ms.
// 2. A form with data-confirm asks before it submits.
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-refresh]").forEach(function (box) {
    var every = parseInt(box.getAttribute("data-interval-ms") || "5000", 10);
    setInterval(function () {
      if (document.hidden) { return; }
      fetch(box.getAttribute("data-refresh"), { credentials: "same-origin", redirect: "error" })
        .then(function (response) {
          if (!response.ok) { throw new Error("refresh " + response.status); }
          return response.text();
        })
        .then(function (html) {
          box.innerHTML = html;  // our own server-rendered, escaped fragment
          box.removeAttribute("data-stale");
        })
        .catch(function () { box.setAttribute("data-stale", "true"); });
    }, every);
  });
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });
});
