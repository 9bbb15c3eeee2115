// Kraken console: sign in with a keypair, then GraphiQL over the session cookie.
// The session cookie is HTTP-only; the CSRF token cookie is copied into a header.
(function () {
  "use strict";
  var DEFAULT_QUERY = "{\n  compute_sessions(status: \"RUNNING\") {\n" +
    "    sess_id id status lang agent created_at\n  }\n}\n";
  function $(id) { return document.getElementById(id); }

  function csrfToken() {
    var m = document.cookie.match(/(?:^|;\s*)kraken_csrf=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json",
                 "Accept": "application/graphql-response+json",
                 "X-Kraken-CSRF": csrfToken() },
      body: JSON.stringify(body)
    });
  }

  function fetcher(params) {
    return post("/admin/graphql", params).then(function (resp) {
      if (resp.status === 401) { showLogin("Your session has ended; sign in again."); }
      return resp.json();
    });
  }

  function showLogin(message) {
    $("ide").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
  }

  function showIde(info) {
    $("login").hidden = true;
    $("ide").hidden = false;
    $("who").textContent = info.access_key;
    $("mode").textContent = info.is_admin ? "(admin)" : "(own resources only)";
    var params = new URLSearchParams(window.location.search);
    var props = { fetcher: fetcher, defaultQuery: DEFAULT_QUERY,
                  query: params.get("query") || undefined };
    if (!info.is_admin) { props.schema = null; }  // introspection is for admins only
    ReactDOM.render(React.createElement(GraphiQL, props), $("graphiql"));
  }

  function onLogin(event) {
    event.preventDefault();
    var body = { access_key: $("access_key").value.trim(), secret_key: $("secret_key").value };
    $("secret_key").value = "";
    post("/console/login", body).then(function (resp) {
      return resp.json().then(function (data) {
        if (!resp.ok) { throw new Error(data.detail || data.title || "sign-in failed"); }
        showIde(data);
      });
    }).catch(function (err) { showLogin(err.message); });
  }

  function onLogout() {
    post("/console/logout", {}).finally(function () {
      ReactDOM.unmountComponentAtNode($("graphiql"));
      showLogin("Signed out.");
    });
  }

  function onOpenTerminal(event) {  // the browser terminal, in a new tab
    event.preventDefault();
    var name = $("term-session").value.trim();
    if (name) {
      window.open("/console/sessions/" + encodeURIComponent(name) + "/terminal", "_blank",
                  "noopener");
    }
  }

  $("login").addEventListener("submit", onLogin);
  $("term-form").addEventListener("submit", onOpenTerminal);
  $("logout-btn").addEventListener("click", onLogout);
  fetch("/console/session", { credentials: "same-origin" }).then(function (resp) {
    return resp.ok ? resp.json().then(showIde) : showLogin("");
  }).catch(function () { showLogin(""); });
}());
