// Confirmation dialogs. A link with data-confirm-dialog="<id of a <dialog>>" opens
// that dialog as a modal instead of being followed (the link itself leads to a
// confirmation page, for browsers without JavaScript). showModal() moves focus
// inside (to the autofocus button), keeps it there and closes on Escape; on close,
// focus goes back to the link that opened it.
(function () {
  "use strict";

  function outside(dialog, event) {
    var box = dialog.getBoundingClientRect();
    return event.clientX < box.left || event.clientX > box.right ||
      event.clientY < box.top || event.clientY > box.bottom;
  }

  function setUp(opener) {
    var dialog = document.getElementById(opener.dataset.confirmDialog);
    if (!dialog || typeof dialog.showModal !== "function") { return; }
    opener.setAttribute("aria-haspopup", "dialog");
    opener.addEventListener("click", function (event) {
      event.preventDefault();
      dialog.showModal();
    });
    dialog.addEventListener("keydown", function (event) {
      // Escape closes this dialog only, not a drawer around it.
      if (event.key === "Escape") { event.stopPropagation(); }
    });
    dialog.addEventListener("click", function (event) {
      // A click on the backdrop cancels, as Escape does (keyboard clicks have no
      // position: detail is 0 for them).
      if (event.target === dialog && event.detail > 0 && outside(dialog, event)) {
        dialog.close();
      }
    });
    dialog.addEventListener("close", function () { opener.focus(); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-confirm-dialog]").forEach(setUp);
  });
})();
