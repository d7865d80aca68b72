/*
 * Rex embed: <script src="https://YOUR-REX/embed.js" defer></script>
 *
 * Enhances every <form data-rex action="https://YOUR-REX/capture" method="post">:
 *  - adds the visit's attribution as hidden fields (utm_*, gclid, fbclid from the landing
 *    page's address, the landing page itself and the external referrer), kept for the
 *    browser tab's session so it survives a click to another page of the site;
 *  - posts the form with fetch and shows success inline (data-rex-success="Your text"),
 *    or the error next to the form (in [data-rex-error] when the form has one);
 *  - if the post cannot be made from script (no fetch, network or CORS failure), lets the
 *    browser post the form the plain way, which works with no script at all.
 * The form also fires "rex:success" and "rex:error". rex:success's event.detail is
 * /capture's answer: the fields the form sent (email normalised) plus the contact's id, the
 * same 201 answer for a new and a known address; it never holds a stored value.
 */
(function () {
  "use strict";
  var CAMPAIGN = ["utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content",
    "gclid", "fbclid"];
  var STORE = "rex_attribution";

  function readStored() {
    try {
      return JSON.parse(window.sessionStorage.getItem(STORE) || "null");
    } catch (e) {
      return null;
    }
  }

  function store(value) {
    try {
      window.sessionStorage.setItem(STORE, JSON.stringify(value));
    } catch (e) { /* storage disabled: attribution still comes from this page */ }
  }

  function externalReferrer() {
    var ref = document.referrer;
    if (!ref) return null;
    try {
      return new URL(ref).origin === window.location.origin ? null : ref;
    } catch (e) {
      return null;
    }
  }

  // The touch of this visit: a campaign in the address starts a new one; otherwise the
  // first page of the tab's session is the landing page.
  function attribution() {
    var params = new URLSearchParams(window.location.search);
    var touch = {};
    var campaign = false;
    CAMPAIGN.forEach(function (key) {
      var value = params.get(key);
      if (value) {
        touch[key] = value;
        campaign = true;
      }
    });
    var stored = readStored();
    if (!campaign && stored) return stored;
    touch.landing_page = window.location.origin + window.location.pathname;
    var referrer = externalReferrer();
    if (referrer) touch.referrer = referrer;
    store(touch);
    return touch;
  }

  var visit = attribution();

  function addAttribution(form) {
    Object.keys(visit).forEach(function (key) {
      if (form.elements.namedItem(key) || form.elements.namedItem("metadata[" + key + "]")) {
        return; // the form's own value wins
      }
      var input = document.createElement("input");
      input.type = "hidden";
      input.name = key;
      input.value = visit[key];
      form.appendChild(input);
    });
  }

  function message(form, selector, className, role) {
    var node = form.querySelector(selector);
    if (!node) {
      node = document.createElement("p");
      node.className = className;
      node.setAttribute("role", role);
      form.appendChild(node);
    }
    return node;
  }

  function setBusy(form, busy) {
    Array.prototype.forEach.call(form.querySelectorAll("button, input[type=submit]"), function (b) {
      b.disabled = busy;
    });
  }

  function succeed(form, contact) {
    var note = document.createElement("p");
    note.className = "rex-success";
    note.setAttribute("role", "status");
    note.textContent = form.getAttribute("data-rex-success") || "Thank you! We'll be in touch.";
    form.parentNode.insertBefore(note, form);
    form.hidden = true;
    form.dispatchEvent(new CustomEvent("rex:success", { detail: contact }));
  }

  function fail(form, text, response) {
    setBusy(form, false);
    var node = message(form, "[data-rex-error]", "rex-error", "alert");
    node.textContent = text;
    form.dispatchEvent(new CustomEvent("rex:error", { detail: response }));
  }

  function plainSubmit(form) {
    // HTMLFormElement.prototype.submit skips the submit event (no loop), and still works
    // when the form has a control named "submit".
    HTMLFormElement.prototype.submit.call(form);
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-rex")) return;
    addAttribution(form);
    if (!window.fetch || !window.URLSearchParams || !window.FormData) return;
    event.preventDefault();
    var body = new URLSearchParams();
    new FormData(form).forEach(function (value, name) {
      if (typeof value === "string") body.append(name, value);
    });
    setBusy(form, true);
    // A form-encoded body and Accept are CORS-safelisted: no preflight round trip.
    // getAttribute: a control named "action" would shadow form.action.
    var action = new URL(form.getAttribute("action") || "", document.baseURI).href;
    window.fetch(action, {
      method: "POST",
      body: body,
      headers: { Accept: "application/json" },
      credentials: "omit",
      mode: "cors"
    }).then(function (response) {
      return response.json().catch(function () { return null; }).then(function (json) {
        if (response.ok) {
          succeed(form, json && json.data);
        } else {
          var text = json && json.error && json.error.message;
          fail(form, text || "Sorry, your details could not be sent. Please try again.", json);
        }
      });
    }, function () {
      // Not allowed to read the answer (origin not in the workspace's allowed_origins) or
      // the network failed: the plain form post still works. A capture is an upsert by
      // email, so a post that did reach Rex is not duplicated by this one.
      plainSubmit(form);
    });
  });
})();
