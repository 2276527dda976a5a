// Progressive enhancement for the server-rendered pages; every form also works without it.
// - form[data-fragment-target]: a form whose answer (a server-rendered fragment) replaces the
//   target's content instead of loading a new page (the "what are you looking for?" box).
// - form[data-words-form]: posts a review, shows it at once, then refreshes [data-for-you] once
//   the server says the text's vector is made (202 means "not yet": ask again shortly).
(function () {
  "use strict";
  var FRAGMENT = { "X-Fragment": "1" };
  var POLL_MS = 800;
  var POLL_TRIES = 40;

  function fetchFragment(url, options) {
    options = options || {};
    options.headers = Object.assign({}, FRAGMENT, options.headers || {});
    options.credentials = "same-origin";
    return fetch(url, options);
  }

  function bindFragmentForm(form) {
    form.addEventListener("submit", function (event) {
      var target = document.querySelector(form.dataset.fragmentTarget);
      if (!target) { return; }
      event.preventDefault();
      var data = new FormData(form);
      var posted = form.method.toLowerCase() === "post";
      target.setAttribute("aria-busy", "true");
      // A POST form (the question box: it records a search, and long questions fit no URL)
      // posts its own FormData, CSRF token included; a GET form sends its fields in the address.
      (posted
        ? fetchFragment(form.action, { method: "POST", body: data })
        : fetchFragment(form.action + "?" + new URLSearchParams(data).toString()))
        .then(function (response) { return response.text(); })
        .then(function (html) { target.innerHTML = html; })
        .catch(function () { target.textContent = "Something went wrong. Please try again."; })
        .finally(function () { target.removeAttribute("aria-busy"); });
    });
  }

  function refreshForYou(activityId, tries) {
    var panel = document.querySelector("[data-for-you]");
    if (!panel) { return; }
    var status = document.querySelector("[data-for-you-status]");
    var url = panel.dataset.forYou + "?k=" + (panel.dataset.size || "6") + "&after=" + encodeURIComponent(activityId);
    panel.setAttribute("aria-busy", "true");
    fetchFragment(url).then(function (response) {
      if (response.status === 202 && tries < POLL_TRIES) {
        if (status) { status.textContent = "Updating your recommendations…"; }
        window.setTimeout(function () { refreshForYou(activityId, tries + 1); }, POLL_MS);
        return null;
      }
      return response.text().then(function (html) {
        panel.innerHTML = html;
        panel.removeAttribute("aria-busy");
        panel.dataset.updatedFor = activityId;
        if (status) { status.textContent = "Your recommendations were updated."; }
      });
    }).catch(function () {
      panel.removeAttribute("aria-busy");
      if (status) { status.textContent = "Could not update your recommendations; reload the page to see them."; }
    });
  }

  function bindWordsForm(form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var status = document.querySelector("[data-words-status]");
      var button = form.querySelector("button[type=submit]");
      if (button) { button.disabled = true; }
      fetchFragment(form.action, { method: "POST", body: new FormData(form) })
        .then(function (response) {
          return response.text().then(function (html) {
            if (response.status === 201) {
              var list = document.querySelector("#reviews");
              if (list) {
                var empty = list.querySelector("[data-empty]");
                if (empty) { empty.remove(); }
                list.insertAdjacentHTML("afterbegin", html);
              }
              form.reset();
              var errors = form.querySelectorAll(".errorlist");
              errors.forEach(function (node) { node.remove(); });
              if (status) { status.textContent = "Thank you, your words were saved."; }
              refreshForYou(response.headers.get("X-Activity-Id"), 0);
            } else if (response.status === 400) {
              var holder = document.createElement("div");
              holder.innerHTML = html;
              var fresh = holder.querySelector("form[data-words-form]");
              if (fresh) {
                form.replaceWith(fresh);
                bindWordsForm(fresh);
                var firstError = fresh.querySelector("[aria-invalid=true]");
                if (firstError) { firstError.focus(); }
              }
              if (status) { status.textContent = "Please check the form."; }
            } else {
              if (status) { status.textContent = "Could not save (" + response.status + "). Please try again."; }
            }
          });
        })
        .catch(function () { if (status) { status.textContent = "Could not save. Please try again."; } })
        .finally(function () { if (button) { button.disabled = false; } });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form[data-fragment-target]").forEach(bindFragmentForm);
    document.querySelectorAll("form[data-words-form]").forEach(bindWordsForm);
  });
})();
