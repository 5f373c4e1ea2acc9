// People page: the Copy button next to a new set-password link. Without script the
// link is still selectable in its read-only field.
(function () {
  "use strict";

  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    var field = document.getElementById(button.dataset.copy);
    var done = button.parentElement.querySelector("[data-copy-done]");
    if (!field) {
      return;
    }
    button.addEventListener("click", function () {
      field.focus();
      field.select();
      var shown = function () {
        if (done) {
          done.hidden = false;
        }
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(field.value).then(shown, function () {
          // Refused (permissions): the text stays selected for Ctrl+C.
        });
      } else if (document.execCommand && document.execCommand("copy")) {
        shown();
      }
    });
  });
})();
