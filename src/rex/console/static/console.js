/* Rex console: the few behaviours pages need in place. No inline scripts (CSP), no library.
 * Every behaviour is opt-in by a data- attribute, so pages work without JavaScript too.
 *
 *   data-live-url="/console/leads/fresh?..."  on a <tbody>: polls for newer rows (data-after
 *                                              holds the newest id shown) and puts them on top
 *   data-drop-stage="qualified"                a board column cards can be dropped on
 *   draggable="true" data-move-url="..."       a card; dropping it POSTs stage=<column>
 *   data-copy="element-id"                     a button copying that element's text
 *   data-confirm="Really?"                     on a <form>: asks before submitting
 *
 * State changes send the session's CSRF token (<body data-csrf>) as X-CSRF-Token.
 */
(function () {
  "use strict";

  function csrfToken() {
    return document.body.getAttribute("data-csrf") || "";
  }

  function post(url, fields) {
    var body = new URLSearchParams(fields || {});
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "X-CSRF-Token": csrfToken(),
        "X-Requested-With": "fetch",
        "Content-Type": "application/x-www-form-urlencoded"
      },
      body: body.toString()
    });
  }
  window.rexConsole = { post: post, csrfToken: csrfToken };

  /* Live rows: ask the server for rows newer than the newest one shown. */
  function startLive(tbody) {
    var status = document.getElementById(tbody.getAttribute("data-live-status") || "");
    var every = parseInt(tbody.getAttribute("data-live-every") || "3000", 10);
    function poll() {
      var url = new URL(tbody.getAttribute("data-live-url"), window.location.href);
      url.searchParams.set("after", tbody.getAttribute("data-after") || "");
      fetch(url.toString(), { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
        .then(function (response) {
          if (!response.ok) { throw new Error(String(response.status)); }
          return response.text();
        })
        .then(function (html) {
          var doc = new DOMParser().parseFromString("<table><tbody>" + html + "</tbody></table>", "text/html");
          var rows = doc.querySelectorAll("tbody > tr");
          if (!rows.length) { return; }
          var empty = tbody.querySelector("tr[data-empty]");
          if (empty) { empty.remove(); }
          for (var i = rows.length - 1; i >= 0; i--) {
            tbody.insertBefore(document.importNode(rows[i], true), tbody.firstChild);
          }
          tbody.setAttribute("data-after", rows[0].getAttribute("data-id") || "");
          if (status) {
            status.textContent = rows.length === 1 ? "1 new lead" : rows.length + " new leads";
          }
        })
        .catch(function () { /* the next poll tries again */ })
        .then(function () { window.setTimeout(poll, every); });
    }
    window.setTimeout(poll, every);
  }

  /* Drag and drop of board cards between columns. */
  function startBoard(board) {
    var dragged = null;
    board.addEventListener("dragstart", function (event) {
      var card = event.target.closest ? event.target.closest("[data-move-url]") : null;
      if (!card) { return; }
      dragged = card;
      card.classList.add("dragging");
      event.dataTransfer.effectAllowed = "move";
      event.dataTransfer.setData("text/plain", card.getAttribute("data-deal-id") || "");
    });
    board.addEventListener("dragend", function () {
      if (dragged) { dragged.classList.remove("dragging"); }
    });
    board.querySelectorAll("[data-drop-stage]").forEach(function (column) {
      column.addEventListener("dragover", function (event) {
        if (dragged) { event.preventDefault(); column.classList.add("drop-target"); }
      });
      column.addEventListener("dragleave", function () { column.classList.remove("drop-target"); });
      column.addEventListener("drop", function (event) {
        event.preventDefault();
        column.classList.remove("drop-target");
        if (!dragged) { return; }
        var stage = column.getAttribute("data-drop-stage");
        if (stage === dragged.getAttribute("data-stage")) { return; }
        var list = column.querySelector("[data-cards]") || column;
        list.insertBefore(dragged, list.firstChild);
        post(dragged.getAttribute("data-move-url"), { stage: stage }).then(function (response) {
          window.location.reload();  /* new sums, and the server's word on the move */
          return response;
        });
      });
    });
  }

  function startCopy(button) {
    button.addEventListener("click", function () {
      var source = document.getElementById(button.getAttribute("data-copy"));
      if (!source || !navigator.clipboard) { return; }
      var text = "value" in source ? source.value : source.textContent;
      navigator.clipboard.writeText(text).then(function () {
        var was = button.textContent;
        button.textContent = "Copied";
        window.setTimeout(function () { button.textContent = was; }, 2000);
      });
    });
  }

  function startConfirm(form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live-url]").forEach(startLive);
    document.querySelectorAll("[data-board]").forEach(startBoard);
    document.querySelectorAll("[data-copy]").forEach(startCopy);
    document.querySelectorAll("form[data-confirm]").forEach(startConfirm);
  });
})();
