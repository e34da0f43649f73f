// HeraldWebSocket.jslib: a small C ABI over the browser's WebSocket, for
// herald's WebGLTransport (C#, [DllImport("__Internal")]). Unity merges it
// into the game's emscripten output; everything runs on the page's one
// thread, and every callback into C# comes from a browser event (a later
// turn of the event loop), never from inside a call C# made.
//
// Contract, function by function (strings are UTF-8, NUL-terminated, by
// pointer; a pointer handed to a callback is valid only during the call):
//
//   void HeraldWs_SetCallbacks(onOpen, onText, onClose)
//       Once, before any Open. Function pointers:
//       onOpen(int socket)
//       onText(int socket, const char* utf8, int byteLength)
//           a text frame, or a binary one's bytes (taken as UTF-8).
//       onClose(int socket, int code, const char* reason, int refused, int retryAfterMs)
//           exactly once per socket, its last callback. After an open: the
//           close code the server sent, or 1006 when the connection ended
//           without one. refused=1 when the handshake never completed:
//           code is the HTTP status the node answered (0 when none did),
//           reason "<code>: <message>" of herald's error body, and
//           retryAfterMs its Retry-After (0 when none).
//   int HeraldWs_Open(const char* url, const char* token)
//       Starts connecting; returns the socket id (> 0). A token that is not
//       NULL or empty goes as ?token= (URL-encoded): a browser cannot set
//       headers on a WebSocket. Never fails synchronously: a URL that is not
//       an absolute ws:// or wss:// one, or that the browser rejects,
//       becomes onClose(refused=1, code 0, "invalid url: ...") on a later turn.
//   int HeraldWs_Send(int socket, const char* text)
//       0 when queued; -1 when the socket is not open (the frame is dropped).
//   void HeraldWs_Close(int socket, int code, const char* reason)
//       Starts a clean close; onClose follows. A code the browser refuses
//       (only 1000 and 3000-4999 are allowed) or a reason over 123 bytes
//       closes with 1000 and no reason instead.
//   void HeraldWs_ScheduleClose(int socket, int delayMs, int code, const char* reason)
//       HeraldWs_Close after delayMs on the browser's timer (a paused game
//       runs no Update, so C# cannot), replacing one already scheduled.
//   void HeraldWs_CancelScheduledClose(int socket)
//   void HeraldWs_Free(int socket)
//       Closes if needed and forgets the socket: no callback for it after.
//
// A refused handshake shows nothing to a page (no status, no body: the
// browser fires error then close 1006), so it is diagnosed as herald.js
// does, with fetch. Not on /v1/ws itself: herald checks the upgrade before
// its limits and would answer any plain GET 426 not_websocket. /v1/sse with
// the same query runs the same checks in the same order (authorize, then
// admit) and answers them in plain HTTP, readable cross-origin by pages of
// an allowed origin, Retry-After included.
var HeraldWebSocketLibrary = {
  $HeraldWs: {
    sockets: {},
    next: 1,
    onOpen: 0,
    onText: 0,
    onClose: 0,

    // withString calls fn with a _malloc'ed UTF-8 copy of s and its byte
    // length, and frees it after: C reads it only during the call.
    withString: function (s, fn) {
      var n = lengthBytesUTF8(s);
      var p = _malloc(n + 1);
      stringToUTF8(s, p, n + 1);
      try { fn(p, n); } finally { _free(p); }
    },

    withBytes: function (bytes, fn) {
      var p = _malloc(bytes.length + 1);
      HEAPU8.set(bytes, p); // HEAPU8 read after _malloc: the heap may have grown
      HEAPU8[p + bytes.length] = 0;
      try { fn(p, bytes.length); } finally { _free(p); }
    },

    // end reports the socket's one onClose and forgets it.
    end: function (s, code, reason, refused, retryAfterMs) {
      if (s.ended) return;
      s.ended = true;
      if (s.timer) clearTimeout(s.timer);
      delete HeraldWs.sockets[s.id];
      if (s.freed || !HeraldWs.onClose) return;
      HeraldWs.withString(reason || "", function (p) {
        {{{ makeDynCall('viiiii', 'HeraldWs.onClose') }}}(s.id, code, p, refused, retryAfterMs);
      });
    },

    // diagnose asks the node in plain HTTP why the handshake failed, then
    // reports the refusal.
    diagnose: function (s) {
      var target = s.url.replace(/^ws/i, "http").replace(/\/v1\/ws(?=[?#]|$)/, "/v1/sse");
      if (typeof fetch !== "function" || typeof AbortController !== "function") {
        HeraldWs.end(s, 0, "connection failed", 1, 0);
        return;
      }
      var ctl = new AbortController();
      var status = 0;
      var retryAfterMs = 0;
      fetch(target, { signal: ctl.signal, headers: { Accept: "application/json" }, cache: "no-store" })
        .then(function (res) {
          status = res.status;
          var ra = parseInt(res.headers.get("Retry-After") || "", 10);
          if (ra > 0) retryAfterMs = ra * 1000;
          if (res.ok) {
            // It opened a stream: the node would take this connection now
            // (the refusal has passed, or was not the node's).
            ctl.abort();
            status = 0;
            return "connection failed; the node accepts it now";
          }
          return res.text().then(function (body) {
            try {
              var e = JSON.parse(body).error;
              if (e && e.code) return e.code + ": " + (e.message || "");
            } catch (x) {}
            return "HTTP " + res.status + " (not herald's answer: something in front of it?)";
          });
        })
        .then(function (reason) {
          HeraldWs.end(s, status, reason, 1, retryAfterMs);
        }, function () {
          // No answer, or one the page may not read (an origin the node
          // does not allow answers without CORS headers).
          HeraldWs.end(s, 0, "connection failed (no readable answer from the node)", 1, 0);
        });
    },
  },

  HeraldWs_SetCallbacks: function (onOpen, onText, onClose) {
    HeraldWs.onOpen = onOpen;
    HeraldWs.onText = onText;
    HeraldWs.onClose = onClose;
  },

  HeraldWs_Open: function (urlPtr, tokenPtr) {
    var url = UTF8ToString(urlPtr);
    var token = tokenPtr ? UTF8ToString(tokenPtr) : "";
    if (token) url += (url.indexOf("?") < 0 ? "?" : "&") + "token=" + encodeURIComponent(token);
    var s = { id: HeraldWs.next++, url: url, ws: null, opened: false, closing: false, ended: false, freed: false, timer: 0 };
    HeraldWs.sockets[s.id] = s;
    var invalid = function (why) {
      setTimeout(function () { HeraldWs.end(s, 0, "invalid url: " + why, 1, 0); }, 0);
      return s.id;
    };
    // A browser resolves a relative URL against the page: "x" would connect
    // to the page's own origin. Only an absolute ws:// or wss:// URL names a node.
    if (!/^wss?:\/\/[^\/?#]/i.test(url)) return invalid("not an absolute ws:// or wss:// URL");
    try {
      s.ws = new WebSocket(url);
    } catch (e) {
      return invalid(String(e && e.message || e));
    }
    s.ws.binaryType = "arraybuffer";
    s.ws.onopen = function () {
      s.opened = true;
      if (HeraldWs.onOpen) {{{ makeDynCall('vi', 'HeraldWs.onOpen') }}}(s.id);
    };
    s.ws.onmessage = function (e) {
      if (s.ended || !HeraldWs.onText) return;
      var call = function (p, n) { {{{ makeDynCall('viii', 'HeraldWs.onText') }}}(s.id, p, n); };
      if (typeof e.data === "string") HeraldWs.withString(e.data, call);
      else HeraldWs.withBytes(new Uint8Array(e.data), call);
    };
    // error is always followed by close: close alone reports.
    s.ws.onerror = function () {};
    s.ws.onclose = function (e) {
      if (s.opened) HeraldWs.end(s, e.code || 1006, e.reason || "", 0, 0);
      else if (s.closing) HeraldWs.end(s, 1006, "closed before it opened", 0, 0);
      else HeraldWs.diagnose(s);
    };
    return s.id;
  },

  HeraldWs_Send: function (id, textPtr) {
    var s = HeraldWs.sockets[id];
    if (!s || !s.ws || s.closing || s.ws.readyState !== 1) return -1;
    try {
      s.ws.send(UTF8ToString(textPtr));
    } catch (e) {
      return -1;
    }
    return 0;
  },

  HeraldWs_Close: function (id, code, reasonPtr) {
    var s = HeraldWs.sockets[id];
    if (!s || s.closing) return;
    s.closing = true;
    if (s.timer) { clearTimeout(s.timer); s.timer = 0; }
    if (!s.ws) return; // an invalid URL: its onClose is already on its way
    var reason = reasonPtr ? UTF8ToString(reasonPtr) : "";
    try {
      s.ws.close(code, reason);
    } catch (e) {
      s.ws.close(1000);
    }
  },

  HeraldWs_ScheduleClose: function (id, delayMs, code, reasonPtr) {
    var s = HeraldWs.sockets[id];
    if (!s || s.closing) return;
    if (s.timer) clearTimeout(s.timer);
    var reason = reasonPtr ? UTF8ToString(reasonPtr) : "";
    s.timer = setTimeout(function () {
      s.timer = 0;
      if (s.closing || !s.ws) return;
      s.closing = true;
      try {
        s.ws.close(code, reason);
      } catch (e) {
        s.ws.close(1000);
      }
    }, Math.max(0, delayMs));
  },

  HeraldWs_CancelScheduledClose: function (id) {
    var s = HeraldWs.sockets[id];
    if (s && s.timer) { clearTimeout(s.timer); s.timer = 0; }
  },

  HeraldWs_Free: function (id) {
    var s = HeraldWs.sockets[id];
    if (!s) return;
    s.freed = true;
    s.ended = true;
    if (s.timer) clearTimeout(s.timer);
    delete HeraldWs.sockets[id];
    if (s.ws) {
      s.ws.onopen = s.ws.onmessage = s.ws.onerror = s.ws.onclose = null;
      if (s.ws.readyState < 2) s.ws.close(1000);
    }
  },
};

autoAddDeps(HeraldWebSocketLibrary, "$HeraldWs");
mergeInto(LibraryManager.library, HeraldWebSocketLibrary);
