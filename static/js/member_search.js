// Project settings: as a user name is typed in the member field, offer the active
// users whose user name or email starts with it (GET /people/search/?q=), in the
// field's <datalist>. The server decides who may ask and what is returned.
(function () {
  "use strict";

  var DELAY = 200;
  document.querySelectorAll("datalist[data-search-url]").forEach(function (list) {
    var input = document.querySelector('input[list="' + list.id + '"]');
    if (!input) {
      return;
    }
    var timer = null;
    var asked = null;

    function fill(users) {
      var options = users.map(function (user) {
        var option = document.createElement("option");
        option.value = user.username;
        option.label = user.email ? user.username + " · " + user.email : user.username;
        return option;
      });
      list.replaceChildren.apply(list, options);
    }

    function search() {
      var query = input.value.trim();
      if (!query || query === asked) {
        return;
      }
      asked = query;
      var url = list.dataset.searchUrl + "?q=" + encodeURIComponent(query);
      fetch(url, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
        cache: "no-store",
      })
        .then(function (response) {
          return response.ok ? response.json() : { users: [] };
        })
        .then(function (answer) {
          if (input.value.trim() === query) {
            fill(answer.users || []);
          }
        })
        .catch(function () {
          // No suggestions; the field still takes a typed user name.
        });
    }

    input.addEventListener("input", function () {
      window.clearTimeout(timer);
      timer = window.setTimeout(search, DELAY);
    });
  });
})();
