// herald.js — the herald browser and Node.js client. No dependencies.
//
//   import { Herald } from "/v1/herald.js";
//   const h = new Herald({ url: location.origin, key: "u1" });
//   h.on("message", (m) => console.log(m.data));
//   h.connect();
//
// It reconnects with jittered exponential backoff, resumes after the last
// stored message it handled (since=), drops duplicates, acknowledges stored
// messages, and stops with an "error" event on refusals a retry cannot fix.
// Where a WebSocket cannot open although the node answers plain HTTP (a
// proxy that refuses upgrades), it reads the same messages as Server-Sent
// Events instead (GET /v1/sse, acks by POST /v1/ack); transport: "sse" uses
// only that. The wire protocol is docs/protocol.md.

const STORED_ID = /^(\d+)-(\d+)$/;

/** Compares stored ids "<ms>-<seq>": negative, zero or positive. */
export function compareStoredIds(a, b) {
  const [, am, as] = STORED_ID.exec(a);
  const [, bm, bs] = STORED_ID.exec(b);
  const d = BigInt(am) - BigInt(bm);
  if (d !== 0n) return d < 0n ? -1 : 1;
  const e = BigInt(as) - BigInt(bs);
  return e < 0n ? -1 : e > 0n ? 1 : 0;
}

/** Whether a message id is a stored id (resumable, acknowledgeable). */
export function isStoredId(id) {
  return typeof id === "string" && STORED_ID.test(id);
}

/** An error herald will not get past by retrying. */
export class HeraldError extends Error {
  constructor(message, { status = 0, code = "", closeCode = 0 } = {}) {
    super(message);
    this.name = "HeraldError";
    this.status = status; // HTTP status of a refused connection
    this.code = code; // herald's error code, e.g. "invalid_token"
    this.closeCode = closeCode; // WebSocket close code, e.g. 4001
  }
}

// Close codes after which reconnecting at once would not help.
const FINAL_CLOSES = new Map([
  [1009, "message_too_big"],
  [4001, "disconnected"],
]);

export class Herald {
  /**
   * @param {object} options
   * @param {string|string[]} options.url  node or balancer (http(s):// or ws(s)://); several are tried in turn
   * @param {string} [options.key]         key, in development mode
   * @param {string} [options.token]       connection token
   * @param {() => Promise<string>|string} [options.tokenProvider] called before each connection
   * @param {string[]} [options.topics]
   * @param {boolean} [options.autoAck=true]
   * @param {string} [options.since]       resume after this stored id
   * @param {number} [options.minBackoff=200] ms
   * @param {number} [options.maxBackoff=30000] ms
   * @param {"auto"|"websocket"|"sse"} [options.transport="auto"] auto: WebSocket, falling back to
   *        Server-Sent Events when WebSockets are blocked on the way
   * @param {typeof WebSocket} [options.WebSocket] implementation, if not global
   * @param {typeof EventSource} [options.EventSource] implementation, if not global
   */
  constructor(options) {
    const urls = Array.isArray(options.url) ? options.url : [options.url];
    if (!urls.length || !urls[0]) throw new TypeError("herald: url is required");
    if (!options.key && !options.token && !options.tokenProvider) {
      throw new TypeError("herald: key, token or tokenProvider is required");
    }
    this.options = { autoAck: true, minBackoff: 200, maxBackoff: 30000, topics: [], transport: "auto", ...options };
    if (!["auto", "websocket", "sse"].includes(this.options.transport)) {
      throw new TypeError(`herald: transport must be "auto", "websocket" or "sse", not ${JSON.stringify(this.options.transport)}`);
    }
    this.urls = urls.map(toWebSocketURL);
    // Newest stored id handled per stream: "" for the key's messages, the
    // topic's name for a topic that keeps history.
    this.lastIds = new Map(options.since ? [["", options.since]] : []);
    this.duplicates = 0;
    this.state = "idle"; // idle, connecting, open, waiting, closed
    this._listeners = new Map();
    this._attempt = 0;
    this._next = 0;
    this._ws = null;
    this._timer = null;
    this._stopped = false;
    this._WebSocket = options.WebSocket || globalThis.WebSocket;
    this._EventSource = options.EventSource || globalThis.EventSource;
    // The transport of the next attempt: "sse" from the start when asked
    // for, or once a WebSocket was found blocked (see _open).
    this.transport = this.options.transport === "sse" ? "sse" : "websocket";
    if (this.transport === "websocket" && !this._WebSocket) {
      if (this.options.transport === "websocket" || !this._EventSource) {
        throw new TypeError("herald: no WebSocket implementation; pass options.WebSocket");
      }
      this.transport = "sse";
    }
    if (this.transport === "sse" && !this._EventSource) {
      throw new TypeError("herald: no EventSource implementation; pass options.EventSource");
    }
    this._es = null;
    this._token = "";
    this._acking = null; // an ack POST in flight (Server-Sent Events)
    this._ackNext = "";
  }

  /** The newest stored id of the key's messages handled. */
  get lastId() {
    return this.lastIds.get("") || "";
  }

  /** Listens for "open", "message", "close", "error", "state" or "fallback". */
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return () => this._listeners.get(event).delete(fn);
  }

  _emit(event, value) {
    for (const fn of this._listeners.get(event) || []) {
      try {
        fn(value);
      } catch (err) {
        queueMicrotask(() => { throw err; });
      }
    }
  }

  _setState(state) {
    this.state = state;
    this._emit("state", state);
  }

  /** Connects, and keeps connecting until close() or a final refusal. */
  connect() {
    this._stopped = false;
    this._open();
    return this;
  }

  /** Closes the connection and stops reconnecting. */
  close() {
    this._stopped = true;
    clearTimeout(this._timer);
    if (this._ws) this._ws.close(1000, "client closed");
    if (this._es) this._es.close();
    this._es = null;
    this._setState("closed");
  }

  /** Acknowledges every stored message up to id. */
  ack(id) {
    if (!isStoredId(id)) return;
    if (this._ws && this._ws.readyState === 1) {
      this._ws.send(JSON.stringify({ type: "ack", id }));
    } else if (this._es) {
      this._postAck(id);
    }
  }

  // _postAck acknowledges over HTTP, for an event stream: one POST at a
  // time, the newest id waiting for the one in flight, as acks are
  // cumulative. A failed one is left for the next: it covers this one.
  _postAck(id) {
    if (this._acking) {
      if (!this._ackNext || compareStoredIds(id, this._ackNext) > 0) this._ackNext = id;
      return;
    }
    const url = this._ackURL;
    const body = this._token ? { token: this._token, id } : { key: this.options.key, id };
    this._acking = fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) })
      .then((res) => res.body && res.body.cancel(), () => {})
      .finally(() => {
        this._acking = null;
        const next = this._ackNext;
        this._ackNext = "";
        if (next) this._postAck(next);
      });
  }

  async _target() {
    const base = this.urls[this._next++ % this.urls.length];
    const q = new URLSearchParams();
    const { key, token, tokenProvider, topics } = this.options;
    this._token = "";
    if (tokenProvider) this._token = await tokenProvider();
    else if (token) this._token = token;
    if (this._token) q.set("token", this._token);
    if (key) q.set("key", key);
    if (topics && topics.length) q.set("topics", topics.join(","));
    for (const [stream, id] of this.lastIds) {
      q.set(stream === "" ? "since" : `since.${stream}`, id);
    }
    if (this.transport === "sse") {
      const u = toStreamURL(base);
      this._ackURL = u.replace(/\/sse$/, "/ack");
      return `${u}?${q}`;
    }
    return `${base}?${q}`;
  }

  async _open() {
    if (this._stopped) return;
    this._setState("connecting");
    let target;
    try {
      target = await this._target();
    } catch (err) {
      this._emit("error", err);
      return this._retry();
    }
    if (this.transport === "sse") return this._openStream(target);
    const ws = new this._WebSocket(target);
    this._ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this._attempt = 0;
      this._setState("open");
      this._emit("open", { url: target.split("?")[0] });
    };
    ws.onmessage = (e) => this._receive(e.data);
    // Browsers follow a failed handshake's "error" with "close"; some
    // implementations (Node 20) send only "error". Whichever comes first
    // ends the attempt, once.
    let ended = false;
    const end = async (code, reason) => {
      if (ended) return;
      ended = true;
      if (this._ws === ws) this._ws = null;
      const final = FINAL_CLOSES.get(code);
      this._emit("close", { code, reason, willRetry: !final && !this._stopped });
      if (this._stopped) return;
      if (final) {
        this._fail(new HeraldError(`herald closed the connection: ${code} ${reason}`, { code: final, closeCode: code }));
        return;
      }
      if (!opened) {
        // A refused upgrade looks like any other failure to a WebSocket;
        // ask the node in plain HTTP why, so auth errors are final. A node
        // that answers the plain request "not a WebSocket" (426) was
        // reached, so something on the way refused the upgrade: read the
        // messages as an event stream from now on.
        const { refusal, blocked } = await this._diagnose(target.replace(/^ws/, "http"));
        if (refusal) return this._fail(refusal);
        if (blocked && this.options.transport === "auto" && this._EventSource) {
          this.transport = "sse";
          this._emit("fallback", { transport: "sse" });
          return this._open();
        }
      }
      this._retry();
    };
    ws.onclose = (e) => end(e.code, e.reason);
    ws.onerror = () => { if (!opened) end(1006, "connection failed"); };
  }

  // _openStream reads the messages as Server-Sent Events. EventSource
  // would reconnect by itself, with the URL it first opened; herald's own
  // reconnects (backoff, the next URL, since= of what was handled) apply
  // instead, so every error ends this stream.
  _openStream(target) {
    const es = new this._EventSource(target);
    this._es = es;
    let opened = false;
    let ended = false;
    const end = async (code, reason) => {
      if (ended) return;
      ended = true;
      es.close();
      if (this._es === es) this._es = null;
      const final = FINAL_CLOSES.get(code);
      this._emit("close", { code, reason, willRetry: !final && !this._stopped });
      if (this._stopped) return;
      if (final) {
        this._fail(new HeraldError(`herald closed the connection: ${code} ${reason}`, { code: final, closeCode: code }));
        return;
      }
      if (!opened) {
        // EventSource hides a refusal's status and body: ask again.
        const { refusal } = await this._diagnose(target);
        // A 404 is a node without the endpoint (an older release, during a
        // rolling upgrade): another node, or this one upgraded, serves it.
        if (refusal && refusal.status !== 404) return this._fail(refusal);
        if (this.options.transport === "auto" && this._WebSocket) {
          // The fallback was a guess: a WebSocket refused for another
          // reason (a limit, a full node) reads as blocked too, since a
          // plain GET is no handshake. The next attempt tries it again.
          this.transport = "websocket";
        }
      }
      this._retry();
    };
    es.onopen = () => {
      opened = true;
      this._attempt = 0;
      this._setState("open");
      this._emit("open", { url: target.split("?")[0], transport: "sse" });
    };
    es.onmessage = (e) => this._receive(e.data);
    es.addEventListener("close", (e) => {
      let c = {};
      try {
        c = JSON.parse(e.data);
      } catch {}
      end(c.code || 1006, c.reason || "");
    });
    es.onerror = () => end(1006, opened ? "stream ended" : "connection failed");
  }

  // _diagnose asks the node in plain HTTP why a connection did not open:
  // refusal is a final HeraldError for an answer a retry cannot change;
  // blocked says the node answered 426, "this is not a WebSocket". A
  // request that opens a stream after all is cut at once.
  async _diagnose(url) {
    if (typeof fetch !== "function") return {};
    const ctl = new AbortController();
    try {
      const res = await fetch(url, { signal: ctl.signal, headers: { Accept: "application/json" } });
      if (res.status === 426) return { blocked: true };
      if (![400, 401, 403, 404].includes(res.status)) {
        ctl.abort();
        return {};
      }
      const body = await res.json().catch(() => ({}));
      const err = body.error || {};
      if (!err.code) return {}; // not herald's answer: something in front of it
      return {
        refusal: new HeraldError(`herald refused the connection: ${res.status} ${err.code || ""}: ${err.message || ""}`,
          { status: res.status, code: err.code || "" }),
      };
    } catch {
      return {};
    }
  }

  _fail(err) {
    this._stopped = true;
    this._setState("closed");
    this._emit("error", err);
  }

  _retry() {
    if (this._stopped) return;
    const { minBackoff, maxBackoff } = this.options;
    const bound = Math.min(maxBackoff, minBackoff * 2 ** this._attempt++);
    const delay = bound / 2 + Math.random() * (bound / 2);
    this._setState("waiting");
    this._timer = setTimeout(() => this._open(), delay);
  }

  _receive(text) {
    let m;
    try {
      m = JSON.parse(typeof text === "string" ? text : new TextDecoder().decode(text));
    } catch {
      return; // format=raw is not for this client
    }
    const stored = isStoredId(m.id);
    if (stored) {
      const stream = m.topic || "";
      const last = this.lastIds.get(stream);
      if (last && compareStoredIds(m.id, last) <= 0) {
        this.duplicates++;
        return;
      }
      this.lastIds.set(stream, m.id);
    }
    this._emit("message", m);
    // Acks cover a key's messages; a topic's history needs none.
    if (stored && !m.topic && this.options.autoAck) this.ack(m.id);
  }
}

// toStreamURL turns a WebSocket URL of /v1/ws into its event stream's,
// http(s):// and /v1/sse.
function toStreamURL(u) {
  const url = new URL(u);
  url.protocol = url.protocol === "wss:" ? "https:" : "http:";
  url.pathname = url.pathname.replace(/\/ws$/, "/sse");
  return url.toString();
}

function toWebSocketURL(u) {
  const url = new URL(u, typeof location !== "undefined" ? location.href : undefined);
  if (url.protocol === "http:") url.protocol = "ws:";
  if (url.protocol === "https:") url.protocol = "wss:";
  if (url.pathname === "/" || url.pathname === "") url.pathname = "/v1/ws";
  url.search = "";
  return url.toString();
}
