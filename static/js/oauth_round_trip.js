// Save & Authorize's round trip. The drawer opens the sign-in in a popup (without
// one, the button's formtarget="_blank" opens a tab). When the sign-in is over, the
// OAuth callback page tells the Notification Tools tab (a BroadcastChannel, and
// window.opener.postMessage to this origin while the opener is still known: the
// Cross-Origin-Opener-Policy cuts it once the popup has visited the sign-in page),
// then, after a successful sign-in, closes itself if it is that popup. The tab then loads the tool's drawer
// again, whose card and drawer say "Authorized as ...", or says that the sign-in
// did not complete. No inline script: the Content Security Policy forbids it.
(function () {
  "use strict";

  var CHANNEL = "m365-appsec-mail-oauth";
  var POPUP = "m365-appsec-mail-sign-in";
  var script = document.currentScript;

  function openChannel() {
    return "BroadcastChannel" in window ? new BroadcastChannel(CHANNEL) : null;
  }

  // --- the callback page ---------------------------------------------------------

  function announce(result) {
    var message = {
      type: "oauth-result",
      result: result.dataset.oauthResult,
      provider: result.dataset.provider || "",
      title: result.dataset.title || "",
    };
    var channel = openChannel();
    if (channel) {
      channel.postMessage(message);
      channel.close();
    }
    try {
      if (window.opener && window.opener !== window) {
        window.opener.postMessage(message, window.location.origin);
      }
    } catch (e) {
      // The opener is gone or elsewhere: the channel has told every tab anyway.
    }
    // A refusal stays open: its page says why, the drawer only that it failed.
    if (result.hasAttribute("data-popup") && message.result === "authorized") {
      window.close();
    }
  }

  // --- the Notification Tools page ----------------------------------------------

  function reset(button, flag) {
    flag.remove();
    button.formTarget = "_blank";
  }

  function watchAuthorize(button, status) {
    var form = button.form;
    button.addEventListener("click", function () {
      var popup = window.open("", POPUP, "popup,width=560,height=720");
      if (popup) {
        // The form posts into the popup; the server remembers that it is one.
        button.formTarget = POPUP;
        var flag = document.createElement("input");
        flag.type = "hidden";
        flag.name = "popup";
        flag.value = "1";
        form.appendChild(flag);
        // The form's data is taken when it is submitted, right after this click.
        setTimeout(function () { reset(button, flag); }, 0);
      }
      // A result shown before belongs to the old settings.
      var result = form.querySelector("#test-result");
      if (result) { result.innerHTML = ""; }
      if (status) {
        status.querySelector("[data-authorization-failed]").hidden = true;
        status.querySelector("[data-authorization-waiting]").hidden = false;
      }
    });
  }

  function showFailure(status, title) {
    if (!status) { return; }
    status.querySelector("[data-authorization-waiting]").hidden = true;
    status.querySelector("[data-authorization-failed-title]").textContent = title;
    var failed = status.querySelector("[data-authorization-failed]");
    failed.hidden = false;
    failed.scrollIntoView({ block: "nearest" });
  }

  function listen(button, status) {
    var done = false;
    function onResult(data) {
      if (done || !data || data.type !== "oauth-result") { return; }
      var ownDrawer = button && (!data.provider || data.provider === button.dataset.tool);
      if (data.result === "authorized") {
        if (ownDrawer) {
          done = true;
          window.location.assign(button.dataset.drawerUrl);
        } else if (!document.querySelector("form.drawer-form") && script) {
          // The list of tools, no drawer open: its cards change.
          done = true;
          window.location.assign(script.dataset.toolsUrl || window.location.href);
        }
      } else if (ownDrawer) {
        showFailure(status, data.title);
      }
    }
    var channel = openChannel();
    if (channel) {
      channel.onmessage = function (event) { onResult(event.data); };
    }
    window.addEventListener("message", function (event) {
      if (event.origin === window.location.origin) { onResult(event.data); }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var result = document.querySelector("[data-oauth-result]");
    if (result) {
      announce(result);
      return;
    }
    var button = document.querySelector("button[data-authorize]");
    var status = document.querySelector("[data-oauth-status]");
    if (button) { watchAuthorize(button, status); }
    listen(button, status);
  });
})();
