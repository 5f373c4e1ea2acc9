// Settings drawer: Test Connection without leaving the page, with progress and a
// time limit; fields shown only for some choices (data-show-when="field=value|value").
(function () {
  "use strict";

  function showWhen(form) {
    form.querySelectorAll("[data-show-when]").forEach(function (wrapper) {
      var visible = wrapper.dataset.showWhen.split("&").every(function (rule) {
        var parts = rule.split("=");
        var input = form.querySelector('[name="' + parts[0] + '"]:checked') ||
          form.querySelector('select[name="' + parts[0] + '"]') ||
          form.querySelector('input[name="' + parts[0] + '"]');
        return input && parts[1].split("|").indexOf(input.value) !== -1;
      });
      wrapper.hidden = !visible;
    });
  }

  function pendingSteps(result) {
    result.innerHTML = "";
    var p = document.createElement("p");
    p.className = "result running";
    p.textContent = "Testing connection…";
    result.appendChild(p);
  }

  function testConnection(form, button) {
    var result = form.querySelector("#test-result");
    var timeout = parseInt(form.dataset.testTimeout || "25000", 10);
    var controller = new AbortController();
    var timer = setTimeout(function () { controller.abort(); }, timeout);
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    pendingSteps(result);
    result.scrollIntoView({ block: "nearest" });
    fetch(button.formAction, {
      method: "POST",
      body: new FormData(form),
      headers: { "X-Requested-With": "fetch" },
      credentials: "same-origin",
      signal: controller.signal,
    })
      .then(function (response) { return response.text(); })
      .then(function (html) {
        result.innerHTML = html;
        result.scrollIntoView({ block: "nearest", behavior: "smooth" });
      })
      .catch(function () {
        result.innerHTML = "";
        var p = document.createElement("p");
        p.className = "result failure";
        p.textContent = "The test did not finish in time or the server could not be reached. Try again.";
        result.appendChild(p);
      })
      .finally(function () {
        clearTimeout(timer);
        button.disabled = false;
        button.removeAttribute("aria-busy");
      });
  }

  // A select with data-presets='{"value": {"field": "text"}}' fills those fields
  // when it changes (the Cloud choice fills the SMTP host and port).
  function applyPreset(form, select) {
    var presets;
    try { presets = JSON.parse(select.dataset.presets); } catch (e) { return; }
    var values = presets[select.value];
    if (!values) { return; }
    Object.keys(values).forEach(function (name) {
      var input = form.querySelector('[name="' + name + '"]');
      if (input) { input.value = values[name]; }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form.drawer-form").forEach(function (form) {
      showWhen(form);
      form.addEventListener("change", function (event) {
        if (event.target.matches && event.target.matches("select[data-presets]")) {
          applyPreset(form, event.target);
        }
        showWhen(form);
      });
      var button = form.querySelector("[data-test-connection]");
      if (button) {
        button.addEventListener("click", function (event) {
          event.preventDefault();
          testConnection(form, button);
        });
      }
    });
    document.querySelectorAll("[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () {
        var target = document.getElementById(button.dataset.copy);
        if (target && navigator.clipboard) {
          navigator.clipboard.writeText(target.value || target.textContent);
          button.textContent = "Copied";
        }
      });
    });
  });
})();
