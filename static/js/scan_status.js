// Scan page: while a queued import is not over, ask for the status part of the page
// every two seconds and show it when it changes. The region is a live region, so
// the change is announced; the words come from the server, already translated.
(function () {
  "use strict";

  var INTERVAL = 2000;
  var region = document.getElementById("scan-status");
  if (!region) {
    return;
  }

  function shown() {
    return region.querySelector("[data-scan-status]");
  }

  function isFinal() {
    var state = shown();
    return Boolean(state) && state.dataset.final === "true";
  }

  function poll() {
    fetch(region.dataset.pollUrl, {
      headers: { "X-Requested-With": "fetch" },
      credentials: "same-origin",
      cache: "no-store",
    })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        var template = document.createElement("template");
        template.innerHTML = html;
        var next = template.content.querySelector("[data-scan-status]");
        var current = shown();
        // Replaced only on a change, so that screen readers hear it once.
        if (next && (!current || next.dataset.scanStatus !== current.dataset.scanStatus)) {
          region.replaceChildren(template.content);
        }
      })
      .catch(function () {
        // A network hiccup or a restarting server: try again at the next tick.
      })
      .finally(function () {
        if (!isFinal()) {
          window.setTimeout(poll, INTERVAL);
        }
      });
  }

  if (!isFinal()) {
    window.setTimeout(poll, INTERVAL);
  }
})();
