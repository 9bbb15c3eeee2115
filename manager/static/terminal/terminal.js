// Kraken browser terminal: xterm.js on the session's PTY stream (seed 004 §2.12.4).
// TEXT frames of JSON. In: stdin (base64 `chars`), resize (rows, cols), ping.
// Out: out (base64 `data`, decoded as one UTF-8 stream), error (shown in the terminal).
// Auth: the console's cookie session plus ?csrf=<token> (the readable kraken_csrf cookie);
// without a console session the socket is opened bare, which works behind the official
// client's `backend.ai proxy` (it signs the upgrade request). The page holds no secret.
(function () {
  "use strict";
  var PING_MS = 30000;
  var RESIZE_DEBOUNCE_MS = 100;
  var STDIN_CHUNK = 65536;  // bytes of input per frame, well below the server's frame cap
  function $(id) { return document.getElementById(id); }

  var match = window.location.pathname.match(/^\/console\/sessions\/([^/]+)\/terminal\/?$/);
  var name = match ? decodeURIComponent(match[1]) : "";
  var signedIn = false;
  var csrf = "";
  var ws = null;
  var opened = false;    // the current socket got past the upgrade
  var attached = false;  // some socket ever did: a later open is a re-attach
  var pinger = null;
  var decoder = null;

  Terminal.applyAddon(fit);
  var term = new Terminal({ rendererType: "dom", cursorBlink: true, scrollback: 5000,
                            fontFamily: "monospace", fontSize: 14 });
  term.open($("terminal"));
  // for debugging and the browser test (which drops the socket to test re-attach)
  window.krakenTerminal = term;
  window.krakenTerminalSocket = function () { return ws; };

  function csrfToken() {
    var m = document.cookie.match(/(?:^|;\s*)kraken_csrf=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }

  function toBase64(bytes) {  // in slices, so a big paste cannot overflow the call stack
    var bin = "";
    for (var i = 0; i < bytes.length; i += 0x8000) {
      bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(bin);
  }

  function sendInput(text) {  // UTF-8, a stdin frame per STDIN_CHUNK bytes (frames are capped)
    var bytes = new TextEncoder().encode(text);
    for (var i = 0; i < bytes.length; i += STDIN_CHUNK) {
      send({ type: "stdin", chars: toBase64(bytes.subarray(i, i + STDIN_CHUNK)) });
    }
  }

  function fromBase64(b64) {
    var bin = atob(b64);
    var bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { bytes[i] = bin.charCodeAt(i); }
    return bytes;
  }

  function send(obj) {
    if (ws !== null && ws.readyState === WebSocket.OPEN) { ws.send(JSON.stringify(obj)); }
  }

  function sendSize() { send({ type: "resize", rows: term.rows, cols: term.cols }); }

  function fitNow() {  // resize the terminal to its box; "resize" below tells the server
    var g = term.proposeGeometry();
    if (g && isFinite(g.rows) && isFinite(g.cols) && g.rows >= 2 && g.cols >= 2) {
      term.fit();
    }
  }

  function setState(text, cls) {
    $("state").textContent = text;
    $("state").className = "state " + (cls || "");
  }

  function showNotice(text, link) {
    var p = $("notice");
    p.textContent = text + " ";
    if (link) {
      var a = document.createElement("a");
      a.href = link.href;
      a.textContent = link.text;
      p.appendChild(a);
    }
    p.hidden = false;
  }

  function refused() {
    if (!signedIn) {
      showNotice("The terminal could not be opened: you are not signed in to the console " +
                 "(or, behind `backend.ai proxy`, the session does not exist or is not " +
                 "running). Sign in, then reload this page:", { href: "/console", text: "console" });
    } else {
      showNotice("The terminal could not be opened: the session \u201c" + name + "\u201d does " +
                 "not exist, is not running, or is not yours, or your console session has " +
                 "expired. Reconnect, or sign in again:", { href: "/console", text: "console" });
    }
  }

  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    var url = scheme + "//" + window.location.host + "/stream/kernel/" +
      encodeURIComponent(name) + "/pty" + (csrf ? "?csrf=" + encodeURIComponent(csrf) : "");
    var sock = new WebSocket(url);
    ws = sock;
    opened = false;
    $("reconnect").hidden = true;
    setState("connecting\u2026", "");

    sock.onopen = function () {
      if (ws !== sock) { return; }
      opened = true;
      if (attached) { term.reset(); }  // the server replays recent scrollback on re-attach
      attached = true;
      decoder = new TextDecoder("utf-8");
      $("notice").hidden = true;
      setState("connected", "open");
      fitNow();
      sendSize();
      pinger = window.setInterval(function () { send({ type: "ping" }); }, PING_MS);
      term.focus();
    };

    sock.onmessage = function (event) {
      if (ws !== sock || typeof event.data !== "string") { return; }
      var msg;
      try { msg = JSON.parse(event.data); } catch (e) { return; }
      if (msg.type === "out" && typeof msg.data === "string") {
        term.write(decoder.decode(fromBase64(msg.data), { stream: true }));
      } else if (msg.type === "error") {
        term.write("\r\n\x1b[1;31m" + String(msg.data) + "\x1b[0m\r\n");
      }
    };

    sock.onclose = function (event) {
      if (ws !== sock) { return; }
      ws = null;
      window.clearInterval(pinger);
      pinger = null;
      setState("disconnected", "closed");
      $("reconnect").hidden = false;
      if (!opened) { refused(); return; }
      term.write(decoder.decode());  // whatever an unfinished UTF-8 sequence held
      term.write("\r\n\x1b[1;33m[connection closed" +
                 (event.reason ? ": " + event.reason : " (code " + event.code + ")") +
                 " \u2014 press Enter or click Reconnect to re-attach]\x1b[0m\r\n");
    };
  }

  term.on("data", function (data) {
    if (ws !== null) {
      sendInput(data);
    } else if (data === "\r") {
      connect();
    }
  });
  term.on("resize", sendSize);
  var resizeTimer = null;
  window.addEventListener("resize", function () {
    window.clearTimeout(resizeTimer);
    resizeTimer = window.setTimeout(fitNow, RESIZE_DEBOUNCE_MS);
  });
  $("reconnect").addEventListener("click", function () { connect(); });

  $("session").textContent = name || "?";
  document.title = "Kraken terminal \u2014 " + (name || "?");
  fitNow();
  if (!name) {
    setState("no session", "closed");
    showNotice("No session name in this address; open /console/sessions/<name>/terminal.");
    return;
  }
  fetch("/console/session", { credentials: "same-origin" }).then(function (resp) {
    return resp.ok ? resp.json() : null;
  }).catch(function () { return null; }).then(function (info) {
    if (info && info.access_key) {
      signedIn = true;
      csrf = csrfToken();
      $("who").textContent = "\u2014 signed in as " + info.access_key;
    }
    connect();
  });
}());
