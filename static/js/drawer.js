// Settings drawer.
// - A dialog for the keyboard: focus goes to the first field when it opens, Tab and
//   Shift+Tab stay inside it (and inside a confirmation <dialog> opened from it),
//   Escape or ✕ close it, and focus returns to the card's link that opened it.
// - Fields shown only for some choices: data-show-when="field=value|value", with
//   "!=" for any other value, rules joined with "&" (all hold) and alternatives
//   with ";" (one holds); a checkbox counts as its value, "on", only when checked.
//   data-required-when (same syntax) marks a field required while its rule holds.
// - Test Connection without leaving the page: every step at once, ticked off as
//   the server streams them (integrations/streaming.py), kept in view and spoken
//   (the result area is a polite live region), with a time limit.
(function () {
  "use strict";

  var RULE = /^([\w-]+)(!?=)(.*)$/;

  function valueOf(form, name) {
    var input = form.querySelector('[name="' + name + '"]:checked') ||
      form.querySelector('select[name="' + name + '"]') ||
      form.querySelector('input[name="' + name + '"]:not([type="checkbox"]):not([type="radio"])');
    return input ? input.value : "";
  }

  function holds(form, spec) {
    return spec.split(";").some(function (alternative) {
      return alternative.split("&").every(function (rule) {
        var parts = RULE.exec(rule);
        if (!parts) { return false; }
        var listed = parts[3].split("|").indexOf(valueOf(form, parts[1])) !== -1;
        return parts[2] === "=" ? listed : !listed;
      });
    });
  }

  function showWhen(form) {
    form.querySelectorAll("[data-show-when]").forEach(function (element) {
      element.hidden = !holds(form, element.dataset.showWhen);
    });
    form.querySelectorAll("[data-required-when]").forEach(function (wrapper) {
      var required = holds(form, wrapper.dataset.requiredWhen);
      var mark = wrapper.querySelector("[data-required-mark]");
      if (mark) { mark.hidden = !required; }
      wrapper.querySelectorAll("input, select, textarea").forEach(function (control) {
        if (required) {
          control.setAttribute("aria-required", "true");
        } else {
          control.removeAttribute("aria-required");
        }
      });
    });
  }

  // --- Test Connection --------------------------------------------------------------

  function message(result, className, text) {
    result.innerHTML = "";
    var p = document.createElement("p");
    p.className = "result " + className;
    p.textContent = text;
    result.appendChild(p);
  }

  function keepInView(element) {
    // The drawer's scroll-padding keeps it clear of the sticky action bar.
    if (element) { element.scrollIntoView({ block: "nearest" }); }
  }

  function updateSteps(result, steps) {
    var running = null;
    steps.forEach(function (step) {
      var item = result.querySelector('[data-step="' + step.key + '"]');
      if (!item) { return; }
      item.className = "step step-" + step.status;
      var status = item.querySelector(".step-status");
      if (status && status.textContent !== step.status) { status.textContent = step.status; }
      if (step.status === "running") { running = item; }
    });
    keepInView(running);
  }

  function showFinal(result, html) {
    result.innerHTML = html;
    keepInView(result.querySelector(".result") || result);
  }

  // Reads the answer line by line (NDJSON) and hands each object to `handle`.
  function readLines(response, handle) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done) {
          if (buffer.trim()) { handle(JSON.parse(buffer)); }
          return;
        }
        buffer += decoder.decode(chunk.value, { stream: true });
        var lines = buffer.split("\n");
        buffer = lines.pop();
        lines.forEach(function (line) { if (line.trim()) { handle(JSON.parse(line)); } });
        return pump();
      });
    }
    return pump();
  }

  function testConnection(form, button) {
    if (button.getAttribute("aria-disabled") === "true") { return; }
    var result = form.querySelector("#test-result");
    var timeout = parseInt(form.dataset.testTimeout || "25000", 10);
    var lost = form.dataset.testLostText || "The test did not finish. Try again.";
    var controller = new AbortController();
    var timer = setTimeout(function () { controller.abort(); }, timeout);
    var finished = false;
    // aria-disabled rather than disabled: the button keeps the keyboard focus.
    button.setAttribute("aria-disabled", "true");
    button.setAttribute("aria-busy", "true");
    message(result, "running", form.dataset.testingText || "Testing connection…");
    keepInView(result);
    fetch(button.formAction, {
      method: "POST",
      body: new FormData(form),
      headers: { "X-Requested-With": "fetch", "Accept": "application/x-ndjson, text/html" },
      credentials: "same-origin",
      signal: controller.signal,
    })
      .then(function (response) {
        var type = response.headers.get("Content-Type") || "";
        if (type.indexOf("application/x-ndjson") === -1 || !response.body) {
          // Fields to fix, or too many tests: the result partial, whole.
          return response.text().then(function (html) {
            finished = true;
            showFinal(result, html);
          });
        }
        return readLines(response, function (event) {
          if (event.steps) { updateSteps(result, event.steps); }
          if (event.html !== undefined) {
            if (event.done) {
              finished = true;
              showFinal(result, event.html);
            } else {
              result.innerHTML = event.html;
              keepInView(result.querySelector(".step-running") || result);
            }
          }
        });
      })
      .then(function () {
        if (!finished) { message(result, "failure", lost); }
      })
      .catch(function () { message(result, "failure", lost); })
      .finally(function () {
        clearTimeout(timer);
        button.removeAttribute("aria-disabled");
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

  // --- The drawer as a dialog -------------------------------------------------------

  var FOCUSABLE = 'a[href], button, input:not([type="hidden"]), select, textarea, ' +
    'summary, [tabindex]:not([tabindex="-1"])';

  function focusable(container) {
    return Array.prototype.filter.call(container.querySelectorAll(FOCUSABLE), function (el) {
      return !el.disabled && el.getClientRects().length > 0 &&
        !el.closest("[inert]") && getComputedStyle(el).visibility !== "hidden";
    });
  }

  // The modal on top: a confirmation <dialog> opened from the drawer, else the drawer.
  function topModal(drawer) {
    var open = Array.prototype.filter.call(document.querySelectorAll("dialog[open]"), function (d) {
      return d.matches(":modal");
    });
    return open.length ? open[open.length - 1] : drawer;
  }

  // Everything but the drawer is out of reach (focus, pointer, screen readers).
  function makeRestInert(drawer) {
    var node = drawer;
    while (node && node.parentElement && node !== document.body) {
      Array.prototype.forEach.call(node.parentElement.children, function (sibling) {
        if (sibling !== node && sibling.tagName !== "SCRIPT") { sibling.inert = true; }
      });
      node = node.parentElement;
    }
  }

  // The first field with an error, else the first field.
  function firstField(drawer) {
    var form = drawer.querySelector("form.drawer-form") || drawer;
    var fields = function (container) {
      return focusable(container).filter(function (el) {
        return el.matches("input, select, textarea");
      });
    };
    var invalid = Array.prototype.map.call(form.querySelectorAll(".has-error"), fields)
      .filter(function (found) { return found.length; });
    return (invalid.length ? invalid[0] : fields(form))[0] || focusable(drawer)[0];
  }

  function trapTab(event, container) {
    var items = focusable(container);
    if (!items.length) { event.preventDefault(); return; }
    var first = items[0];
    var last = items[items.length - 1];
    var active = document.activeElement;
    if (!container.contains(active)) {
      event.preventDefault();
      (event.shiftKey ? last : first).focus();
    } else if (event.shiftKey && active === first) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && active === last) {
      event.preventDefault();
      first.focus();
    }
  }

  function setUpDrawer(drawer) {
    var close = drawer.querySelector("[data-drawer-close]");
    makeRestInert(drawer);
    var field = firstField(drawer);
    if (field) { field.focus(); }
    document.addEventListener("keydown", function (event) {
      if (event.key === "Tab") {
        trapTab(event, topModal(drawer));
      } else if (event.key === "Escape" && !event.defaultPrevented &&
        topModal(drawer) === drawer && close) {
        event.preventDefault();
        close.click();
      }
    });
  }

  // Back on the cards after the drawer closed (…/#tool-<key>): focus goes to the
  // link that opened it (remembered for this tab), else the card's first.
  function refocusOpener() {
    var match = /^#tool-([\w-]+)$/.exec(window.location.hash);
    var card = match && document.getElementById("tool-" + match[1]);
    if (!card) { return; }
    var remembered = null;
    try { remembered = window.sessionStorage.getItem("drawer-opener"); } catch (e) { /* private mode */ }
    var opener = (remembered && card.querySelector("#" + CSS.escape(remembered))) ||
      card.querySelector("[data-drawer-opener]");
    if (opener) { opener.focus(); }
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
      // Typing into a field that other fields' rules read (the OAuth endpoints).
      form.addEventListener("input", function () { showWhen(form); });
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
    document.querySelectorAll("[data-drawer-opener]").forEach(function (link) {
      link.addEventListener("click", function () {
        try { window.sessionStorage.setItem("drawer-opener", link.id); } catch (e) { /* private mode */ }
      });
    });
    var drawer = document.querySelector(".drawer[role='dialog']");
    if (drawer) {
      setUpDrawer(drawer);
    } else {
      // After the browser has scrolled to the #fragment, which resets the focus.
      window.addEventListener("load", function () { setTimeout(refocusOpener, 0); });
    }
  });
})();
