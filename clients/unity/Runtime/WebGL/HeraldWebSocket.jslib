// herald's WebGL transport: the browser's WebSocket behind a small C ABI,
// called from C# through [DllImport("__Internal")] (WebGLTransport.cs).
// Strings cross as UTF-8 pointers; events go back through the three
// function pointers given to HeraldWs_SetCallbacks, always from a later turn
// of the browser's event loop, never from inside a call made by C#:
//   onOpen(int socket)
//   onText(int socket, const char* utf8, int byteLength)   (the copy is freed when it returns)
//   onClose(int socket, int code, const char* reason, int refused, int retryAfterMs)
// Exactly one onClose per socket. A handshake that fails is asked about with
// fetch on /v1/sse, the same query over plain HTTP, because a browser's
// WebSocket shows nothing of the answer: refused = 1, code = its HTTP status
// (0: no node answered), reason = herald's "code: message".
var HeraldWebSocket = {
  $herald: { sockets: {}, next: 1, onOpen: 0, onText: 0, onClose: 0 },

  $heraldString: function (s) {
    var n = lengthBytesUTF8(s) + 1;
    var p = _malloc(n);
    stringToUTF8(s, p, n);
    return { ptr: p, bytes: n - 1 };
  },

  $heraldClose__deps: ["$herald", "$heraldString"],
  $heraldClose: function (id, code, reason, refused, retryAfterMs) {
    var s = herald.sockets[id];
    if (!s || s.closed) return;
    s.closed = true;
    if (s.timer) clearTimeout(s.timer);
    delete herald.sockets[id];
    var r = heraldString(reason || "");
    try {
      {{{ makeDynCall('viiiii', 'herald.onClose') }}}(id, code, r.ptr, refused, retryAfterMs);
    } finally {
      _free(r.ptr);
    }
  },

  // Why the handshake of url failed: GET the same query on /v1/sse, read
  // the status, herald's error body and Retry-After; a stream that opens
  // after all is cut at once.
  $heraldDiagnose__deps: ["$heraldClose"],
  $heraldDiagnose: function (id, url) {
    var http = url.replace(/^ws/, "http").replace(/\/v1\/ws(\?|$)/, "/v1/sse$1");
    var ctl = typeof AbortController === "function" ? new AbortController() : null;
    var timer = setTimeout(function () { if (ctl) ctl.abort(); }, 5000);
    fetch(http, { signal: ctl ? ctl.signal : undefined, headers: { Accept: "application/json" } })
      .then(function (res) {
        var retry = parseInt(res.headers.get("Retry-After") || "", 10);
        var retryMs = isFinite(retry) && retry > 0 ? Math.min(retry, 86400) * 1000 : 0;
        if (res.status === 200) {
          if (ctl) ctl.abort();
          return { status: 0, reason: "the connection failed, though the node accepts it now", retryMs: 0 };
        }
        return res.text().then(function (body) {
          var reason = body.slice(0, 200);
          try {
            var e = JSON.parse(body).error;
            if (e && e.code) reason = e.code + ": " + (e.message || "");
          } catch (ignored) {}
          return { status: res.status, reason: reason, retryMs: retryMs };
        });
      })
      .catch(function (err) {
        return { status: 0, reason: "no node answered, or the page's origin is not in the node's --allowed-origins: " + (err && err.message ? err.message : err), retryMs: 0 };
      })
      .then(function (d) {
        clearTimeout(timer);
        heraldClose(id, d.status, d.reason, 1, d.retryMs);
      });
  },

  HeraldWs_SetCallbacks__deps: ["$herald"],
  HeraldWs_SetCallbacks: function (onOpen, onText, onClose) {
    herald.onOpen = onOpen;
    herald.onText = onText;
    herald.onClose = onClose;
  },

  // Returns the socket's id (> 0). The token, if any, goes as ?token=:
  // a browser cannot set headers on a WebSocket.
  HeraldWs_Open__deps: ["$herald", "$heraldClose", "$heraldDiagnose", "$heraldString"],
  HeraldWs_Open: function (urlPtr, tokenPtr) {
    var id = herald.next++;
    var url = UTF8ToString(urlPtr);
    var token = tokenPtr ? UTF8ToString(tokenPtr) : "";
    if (token) url += (url.indexOf("?") < 0 ? "?" : "&") + "token=" + encodeURIComponent(token);
    var s = { ws: null, open: false, closed: false, timer: 0 };
    herald.sockets[id] = s;
    try {
      s.ws = new WebSocket(url);
    } catch (e) {
      setTimeout(function () { heraldClose(id, 0, "not a WebSocket URL: " + e.message, 1, 0); }, 0);
      return id;
    }
    s.ws.binaryType = "arraybuffer";
    s.ws.onopen = function () {
      if (s.closed) return;
      s.open = true;
      {{{ makeDynCall('vi', 'herald.onOpen') }}}(id);
    };
    s.ws.onmessage = function (ev) {
      if (s.closed) return;
      var text = typeof ev.data === "string" ? ev.data : new TextDecoder().decode(new Uint8Array(ev.data));
      var t = heraldString(text);
      try {
        {{{ makeDynCall('viii', 'herald.onText') }}}(id, t.ptr, t.bytes);
      } finally {
        _free(t.ptr);
      }
    };
    s.ws.onerror = function () {}; // close follows, with what there is to say
    s.ws.onclose = function (ev) {
      if (s.closed) return;
      if (!s.open) heraldDiagnose(id, url);
      else heraldClose(id, ev.code || 1006, ev.reason || "", 0, 0);
    };
    return id;
  },

  // 0: queued; -1: not open (the frame is dropped).
  HeraldWs_Send__deps: ["$herald"],
  HeraldWs_Send: function (id, textPtr) {
    var s = herald.sockets[id];
    if (!s || !s.open || s.closed || s.ws.readyState !== 1) return -1;
    s.ws.send(UTF8ToString(textPtr));
    return 0;
  },

  HeraldWs_Close__deps: ["$herald"],
  HeraldWs_Close: function (id, code, reasonPtr) {
    var s = herald.sockets[id];
    if (!s || s.closed || !s.ws) return;
    try {
      s.ws.close(code, UTF8ToString(reasonPtr));
    } catch (e) {
      s.ws.close(); // a code the browser refuses (it allows 1000 and 3000-4999)
    }
  },

  // A close on the browser's own timer: a paused game runs no Update.
  HeraldWs_ScheduleClose__deps: ["$herald"],
  HeraldWs_ScheduleClose: function (id, delayMs, code, reasonPtr) {
    var s = herald.sockets[id];
    if (!s || s.closed) return;
    var reason = UTF8ToString(reasonPtr);
    if (s.timer) clearTimeout(s.timer);
    s.timer = setTimeout(function () {
      s.timer = 0;
      if (!s.closed && s.ws) s.ws.close(code, reason);
    }, delayMs);
  },

  HeraldWs_CancelScheduledClose__deps: ["$herald"],
  HeraldWs_CancelScheduledClose: function (id) {
    var s = herald.sockets[id];
    if (s && s.timer) {
      clearTimeout(s.timer);
      s.timer = 0;
    }
  },

  // Forgets the socket, closing it if needed: no callback comes for it afterwards.
  HeraldWs_Free__deps: ["$herald"],
  HeraldWs_Free: function (id) {
    var s = herald.sockets[id];
    if (!s) return;
    s.closed = true;
    if (s.timer) clearTimeout(s.timer);
    delete herald.sockets[id];
    if (s.ws && s.ws.readyState < 2) {
      try { s.ws.close(1000, "bye"); } catch (e) {}
    }
  },
};

mergeInto(LibraryManager.library, HeraldWebSocket);
