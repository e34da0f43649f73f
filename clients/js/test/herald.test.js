// Tests of herald.js against real herald nodes, which js_test.go starts:
// HERALD_A and HERALD_B are two nodes of one cluster, HERALD_SECURED a node
// that checks tokens, HERALD_NO_UPGRADE a proxy in front of A that refuses
// WebSocket upgrades (403), as some corporate proxies do.
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { Herald, HeraldError, compareStoredIds } from "../herald.js";

const A = process.env.HERALD_A;
const B = process.env.HERALD_B;
const SECURED = process.env.HERALD_SECURED;
const NO_UPGRADE = process.env.HERALD_NO_UPGRADE;
if (!A || !B || !SECURED || !NO_UPGRADE) {
  console.error("herald tests need running nodes: run `npm test` (go test starts Redis and the nodes), " +
    "or set HERALD_A, HERALD_B, HERALD_SECURED and HERALD_NO_UPGRADE and run `npm run test:against`");
  process.exit(1);
}

async function send(node, body) {
  const res = await fetch(`${node}/v1/send`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  assert.equal(res.status, 200, await res.clone().text());
  return res.json();
}

function nextMessage(h, timeout = 5000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { off(); reject(new Error("no message")); }, timeout);
    const off = h.on("message", (m) => { clearTimeout(t); off(); resolve(m); });
  });
}

function opened(h) {
  return new Promise((resolve) => { const off = h.on("open", () => { off(); resolve(); }); });
}

test("a client receives a send through another node, with the documented fields", async () => {
  const h = new Herald({ url: B, key: "js-u1" }).connect();
  await opened(h);
  const got = nextMessage(h);
  await send(A, { key: "js-u1", data: { item: "sword" } });
  const m = await got;
  assert.equal(m.key, "js-u1");
  assert.deepEqual(m.data, { item: "sword" });
  assert.ok(m.id && m.ts > 0);
  h.close();
});

test("after its node goes away the client resumes elsewhere and gets what was stored meanwhile, once", async () => {
  // The client talks to A through a URL that A's shutdown will not affect:
  // it is given both nodes and moves to the next when one closes.
  const h = new Herald({ url: [A, B], key: "js-u2", minBackoff: 50 }).connect();
  await opened(h);
  let got = nextMessage(h);
  await send(B, { key: "js-u2", data: 1, store: true });
  const first = await got;
  assert.equal(h.lastId, first.id);

  // Kick the connection the way a node restart does (1012 is retried).
  h._ws.close(4000, "test: drop");
  got = nextMessage(h);
  await send(A, { key: "js-u2", data: 2, store: true });
  const second = await got;
  assert.equal(second.data, 2);
  assert.ok(compareStoredIds(second.id, first.id) > 0);
  assert.equal(h.duplicates, 0);
  h.close();
});

test("acks reach the sender waiting for them", async () => {
  const h = new Herald({ url: B, key: "js-u3" }).connect();
  await opened(h);
  const answer = await send(A, { key: "js-u3", data: "ack me", wait: "acked", timeout_ms: 5000 });
  assert.equal(answer.results["js-u3"].status, "acked");
  h.close();
});

test("a refused token is a final, explained error, not an endless retry", async () => {
  const h = new Herald({ url: SECURED, token: "not-a-token", minBackoff: 20 });
  const err = await new Promise((resolve) => { h.on("error", resolve); h.connect(); });
  assert.ok(err instanceof HeraldError);
  assert.equal(err.status, 401);
  assert.equal(err.code, "invalid_token");
  assert.equal(h.state, "closed");
});

test("over Server-Sent Events a client receives sends through another node, and its acks reach the sender", async () => {
  const h = new Herald({ url: B, key: "js-sse1", transport: "sse" }).connect();
  await opened(h);
  assert.equal(h.transport, "sse");
  let got = nextMessage(h);
  await send(A, { key: "js-sse1", data: { item: "sword" } });
  const plain = await got;
  assert.equal(plain.key, "js-sse1");
  assert.deepEqual(plain.data, { item: "sword" });
  // A stored send waiting for the ack is answered "acked": the client
  // acknowledged it by POST /v1/ack.
  got = nextMessage(h);
  const answer = await send(A, { key: "js-sse1", data: "ack me", wait: "acked", timeout_ms: 5000 });
  const stored = await got;
  assert.equal(answer.results["js-sse1"].status, "acked");
  assert.equal(stored.id, answer.results["js-sse1"].id);
  assert.equal(h.lastId, stored.id);
  h.close();
});

test("over Server-Sent Events a client whose stream drops resumes on the next node with what was stored meanwhile, once", async () => {
  const h = new Herald({ url: [A, B], key: "js-sse4", transport: "sse", minBackoff: 50 }).connect();
  await opened(h);
  let got = nextMessage(h);
  await send(B, { key: "js-sse4", data: 1, store: true });
  const first = await got;
  assert.equal(h.lastId, first.id);

  // The stream drops as a network failure drops it: EventSource reports an
  // error. The client reconnects on its own terms (the next URL, since=).
  const reopened = opened(h);
  got = nextMessage(h, 10000);
  h._es.onerror(new Event("error"));
  await send(A, { key: "js-sse4", data: 2, store: true });
  await reopened;
  const second = await got;
  assert.equal(second.data, 2);
  assert.ok(compareStoredIds(second.id, first.id) > 0);
  assert.equal(h.duplicates, 0);
  h.close();
});

test("behind a proxy that refuses WebSocket upgrades the client falls back to Server-Sent Events", async () => {
  const h = new Herald({ url: NO_UPGRADE, key: "js-sse2", minBackoff: 20 });
  const fellBack = new Promise((resolve) => h.on("fallback", resolve));
  h.connect();
  await fellBack;
  await opened(h);
  assert.equal(h.transport, "sse");
  const got = nextMessage(h);
  const answer = await send(A, { key: "js-sse2", data: "through the proxy", wait: "acked", timeout_ms: 5000 });
  assert.equal((await got).data, "through the proxy");
  assert.equal(answer.results["js-sse2"].status, "acked");
  h.close();
});

test("during a rolling upgrade a node of the previous release, which has no event stream, is passed over, not a final refusal", async () => {
  // What the previous release answers GET /v1/sse with: herald's own 404.
  const old = http.createServer((req, res) => {
    res.writeHead(404, { "Content-Type": "application/json" });
    res.end(JSON.stringify({ error: { code: "not_found", message: "no such endpoint" } }));
  });
  await new Promise((resolve) => old.listen(0, "127.0.0.1", resolve));
  const oldURL = `http://127.0.0.1:${old.address().port}`;
  const h = new Herald({ url: [oldURL, A], key: "js-sse-upgrade", transport: "sse", minBackoff: 20 });
  let failed = null;
  h.on("error", (e) => { failed = e; });
  let timer;
  const open = new Promise((resolve, reject) => {
    h.on("open", resolve);
    h.on("error", reject);
    timer = setTimeout(() => reject(new Error("not open on the current node within 5 s")), 5000);
  });
  h.connect();
  try {
    const at = await open.finally(() => clearTimeout(timer));
    assert.equal(failed, null);
    assert.equal(at.url, `${A}/v1/sse`);
  } finally {
    h.close();
    old.close();
  }
});

test("over Server-Sent Events a refused token is a final, explained error too", async () => {
  const h = new Herald({ url: SECURED, token: "not-a-token", transport: "sse", minBackoff: 20 });
  const err = await new Promise((resolve) => { h.on("error", resolve); h.connect(); });
  assert.ok(err instanceof HeraldError);
  assert.equal(err.status, 401);
  assert.equal(err.code, "invalid_token");
  assert.equal(h.state, "closed");
});

test("an operator's disconnect (4001) ends an event stream for good, as it does a WebSocket", async () => {
  const h = new Herald({ url: B, key: "js-sse3", transport: "sse", minBackoff: 20 }).connect();
  await opened(h);
  const closed = new Promise((resolve) => h.on("close", resolve));
  const failed = new Promise((resolve) => h.on("error", resolve));
  const res = await fetch(`${A}/v1/connections/js-sse3`, { method: "DELETE" });
  assert.equal(res.status, 200);
  const c = await closed;
  assert.equal(c.code, 4001);
  assert.equal(c.willRetry, false);
  assert.equal((await failed).closeCode, 4001);
  assert.equal(h.state, "closed");
});

test("an unknown transport is refused at once", () => {
  assert.throws(() => new Herald({ url: A, key: "k", transport: "carrier-pigeon" }), TypeError);
});

test("stored ids compare by milliseconds then sequence", () => {
  assert.ok(compareStoredIds("10-0", "9-5") > 0);
  assert.ok(compareStoredIds("10-1", "10-0") > 0);
  assert.equal(compareStoredIds("18446744073709551615-3", "18446744073709551615-3"), 0);
});
