// The client's reaction to what a real node rarely or never produces on
// demand (4001, 4003, a replay that overlaps what was processed, a refused
// upgrade), against a small scripted WebSocket server in this process. The
// server side of each case is written out in the test: what it receives is
// asserted, what it sends is the protocol's wire format.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocketServer } from 'ws';
import { backoff } from '../dist/index.js';
import { client, memoryStorage, record, until } from './support.mjs';

/** A WebSocket server on loopback; `conns` holds each connection with its received messages. */
async function fakeServer(options = {}) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, ...options });
  await new Promise((ok) => wss.once('listening', ok));
  const conns = [];
  wss.on('connection', (ws) => {
    const conn = { ws, got: [], closed: false };
    ws.on('message', (d) => conn.got.push(JSON.parse(String(d))));
    ws.on('close', () => (conn.closed = true));
    conns.push(conn);
  });
  return {
    url: `ws://127.0.0.1:${wss.address().port}/ws`,
    conns,
    async conn(n) {
      await until(() => conns[n - 1], `connection ${n} to the fake server`);
      return conns[n - 1];
    },
    async message(conn, type) {
      await until(() => conn.got.find((m) => m.type === type), `a ${type} from the client`);
      return conn.got.find((m) => m.type === type);
    },
    close() {
      for (const c of conns) c.ws.terminate();
      return new Promise((ok) => wss.close(ok));
    },
  };
}

const send = (conn, m) => conn.ws.send(JSON.stringify(m));
const welcome = (conn, join, extra = {}) =>
  send(conn, { type: 'joined', id: join.id, room: join.room, peer: 'p1', session: 'tok-1', peers: [], state: { version: 0, data: {} }, ice_servers: [], ...extra });

test('reconnect hint: resumes after a jittered delay with token and last_seq; a replayed seq is dropped', async () => {
  const srv = await fakeServer();
  const c = client(srv.url, { room: 'r', reconnect: () => 60_000 });
  const rec = record(c);
  void c.connect();
  const c1 = await srv.conn(1);
  const join1 = await srv.message(c1, 'join');
  assert.equal(join1.resume, undefined);
  welcome(c1, join1);
  for (const seq of [1, 2, 3]) send(c1, { type: 'broadcast', seq, from: 'x', payload: seq });
  await rec.nth('broadcast', 3);
  send(c1, { type: 'reconnect', reason: 'shutdown', after_ms: 50 });
  c1.ws.close(1001, 'server shutting down');
  // The hint's delay replaces the policy's 60 s.
  const c2 = await srv.conn(2);
  const join2 = await srv.message(c2, 'join');
  assert.equal(join2.resume, 'tok-1');
  assert.equal(join2.last_seq, 3);
  assert.equal(join2.peer, undefined, 'a resume names no peer: the token does');
  welcome(c2, join2, { recovered: true });
  for (const seq of [3, 4]) send(c2, { type: 'broadcast', seq, from: 'x', payload: seq });
  await rec.nth('broadcast', 4);
  assert.deepEqual(rec.of('broadcast').map((b) => b.seq), [1, 2, 3, 4]);
  assert.deepEqual(rec.of('reconnect'), [{ type: 'reconnect', reason: 'shutdown', after_ms: 50 }]);
  assert.equal(rec.of('lost')[0].code, 1001);
  assert.equal(rec.of('joined')[1].resumed, true);
  c.close();
  await srv.close();
});

test('recovered:false resets the seq baseline and is reported', async () => {
  const srv = await fakeServer();
  const c = client(srv.url, { room: 'r', reconnect: () => 0 });
  const rec = record(c);
  void c.connect();
  const c1 = await srv.conn(1);
  welcome(c1, await srv.message(c1, 'join'));
  send(c1, { type: 'signal', seq: 9, from: 'x', payload: 'a' });
  await rec.nth('signal', 1);
  c1.ws.terminate();
  const c2 = await srv.conn(2);
  const join2 = await srv.message(c2, 'join');
  assert.equal(join2.last_seq, 9);
  // The session had expired: a fresh peer whose seqs start again at 1.
  welcome(c2, join2, { recovered: false, session: 'tok-2' });
  send(c2, { type: 'signal', seq: 1, from: 'x', payload: 'b' });
  await rec.nth('signal', 2);
  const j = rec.of('joined')[1];
  assert.deepEqual([j.resumed, j.recovered], [false, false]);
  assert.equal(c.recovered, false);
  c.close();
  await srv.close();
});

test('server events and unsolicited errors reach their listeners; a throwing listener stops nobody', async () => {
  const srv = await fakeServer();
  const c = client(srv.url, { room: 'r' });
  const rec = record(c);
  // Where a browser reports a listener's exception.
  const thrown = [];
  globalThis.reportError = (e) => thrown.push(e.message);
  c.on('server', () => {
    throw new Error('listener bug');
  });
  void c.connect();
  const c1 = await srv.conn(1);
  welcome(c1, await srv.message(c1, 'join'));
  send(c1, { type: 'server', seq: 1, payload: { notice: 'maintenance' } });
  send(c1, { type: 'error', code: 'BAD_REQUEST', message: 'not JSON' });
  const err = await rec.nth('error', 1);
  assert.deepEqual([err.code, err.message, err.retryable], ['BAD_REQUEST', 'not JSON', false]);
  assert.deepEqual(rec.of('server')[0].payload, { notice: 'maintenance' });
  delete globalThis.reportError;
  assert.deepEqual(thrown, ['listener bug']);
  assert.equal(c.connectionState, 'joined');
  c.close();
  await srv.close();
});

test('4001: the session is forgotten and the next join is fresh, with the same peer id', async () => {
  const srv = await fakeServer();
  const storage = memoryStorage();
  const c = client(srv.url, { room: 'r', storage, reconnect: () => 0 });
  const rec = record(c);
  void c.connect();
  const c1 = await srv.conn(1);
  welcome(c1, await srv.message(c1, 'join'));
  await rec.nth('joined', 1);
  assert.ok(storage.getItem('switchboard:r'));
  c1.ws.close(4001, 'session lost');
  const c2 = await srv.conn(2);
  const join2 = await srv.message(c2, 'join');
  assert.equal(join2.resume, undefined);
  assert.equal(join2.last_seq, undefined);
  assert.equal(join2.peer, 'p1');
  welcome(c2, join2, { session: 'tok-2' });
  const j = await rec.nth('joined', 2);
  assert.deepEqual([j.resumed, j.recovered], [false, false]);
  assert.equal(JSON.parse(storage.getItem('switchboard:r')).session, 'tok-2');
  c.close();
  await srv.close();
});

test('4003: removed by the server, the client ends and forgets the session', async () => {
  const srv = await fakeServer();
  const storage = memoryStorage();
  const c = client(srv.url, { room: 'r', storage, reconnect: () => 0 });
  const rec = record(c);
  void c.connect();
  const c1 = await srv.conn(1);
  welcome(c1, await srv.message(c1, 'join'));
  await rec.nth('joined', 1);
  const pending = c.broadcast('x').catch((e) => e); // sent, never answered
  await srv.message(c1, 'broadcast');
  c1.ws.close(4003, 'kicked');
  const d = await rec.nth('disconnected', 1);
  assert.deepEqual(d, { code: 4003, reason: 'kicked' });
  assert.equal((await pending).code, 'CLOSED');
  assert.equal(rec.of('lost').length, 0);
  assert.equal(storage.getItem('switchboard:r'), null);
  assert.equal(srv.conns.length, 1);
  await srv.close();
});

test('join errors: PEER_ID_TAKEN on a first join ends the client; UNAVAILABLE is retried', async () => {
  const srv = await fakeServer();
  const c = client(srv.url, { room: 'r', peer: 'p1', reconnect: () => 0 });
  void c.connect();
  const c1 = await srv.conn(1);
  const j1 = await srv.message(c1, 'join');
  send(c1, { type: 'error', id: j1.id, code: 'UNAVAILABLE', message: 'backend down' });
  const c2 = await srv.conn(2);
  const j2 = await srv.message(c2, 'join');
  send(c2, { type: 'error', id: j2.id, code: 'PEER_ID_TAKEN', message: 'taken' });
  const err = await c.connect().catch((e) => e);
  assert.equal(err.code, 'PEER_ID_TAKEN');
  assert.equal(c.connectionState, 'disconnected');
  await srv.close();
});

test('the deadline ends a client that cannot get back with an explicit disconnected', async () => {
  const srv = await fakeServer();
  const c = client(srv.url, { room: 'r', deadlineMs: 300, reconnect: () => 20 });
  const rec = record(c);
  void c.connect();
  const c1 = await srv.conn(1);
  welcome(c1, await srv.message(c1, 'join'));
  await rec.nth('joined', 1);
  await srv.close(); // every later attempt is refused
  const d = await rec.nth('disconnected', 1);
  assert.equal(d.code, 'DEADLINE');
  assert.ok(rec.of('lost').length >= 2, 'it kept trying until the deadline');
  assert.deepEqual(rec.of('connection'), ['connecting', 'joined', 'reconnecting', 'disconnected']);
});

test('the policy sees attempt, elapsed time and reason, and ends the client by returning null', async () => {
  const srv = await fakeServer();
  const seen = [];
  const c = client(srv.url, {
    room: 'r',
    reconnect: (ctx) => (seen.push(ctx), ctx.attempt < 3 ? 0 : null),
  });
  const rec = record(c);
  void c.connect();
  const c1 = await srv.conn(1);
  welcome(c1, await srv.message(c1, 'join'));
  await rec.nth('joined', 1);
  await srv.close();
  const d = await rec.nth('disconnected', 1);
  assert.equal(d.code, 'GAVE_UP');
  assert.deepEqual(seen.map((s) => s.attempt), [1, 2, 3]);
  assert.ok(seen.every((s, i) => i === 0 || s.elapsedMs >= seen[i - 1].elapsedMs));
});

test('a URL list: each lost connection moves on to the next URL', async () => {
  const [s1, s2] = [await fakeServer(), await fakeServer()];
  const c = client([s1.url, s2.url], { room: 'r', reconnect: () => 0 });
  const rec = record(c);
  void c.connect();
  const a = await s1.conn(1);
  welcome(a, await s1.message(a, 'join'));
  await rec.nth('joined', 1);
  a.ws.terminate();
  const b = await s2.conn(1);
  welcome(b, await s2.message(b, 'join'), { recovered: true });
  const j = await rec.nth('joined', 2);
  assert.equal(j.url, s2.url);
  c.close();
  await Promise.all([s1.close(), s2.close()]);
});

test('an upgrade refused with 401: one retry with a fresh token, then UNAUTHORIZED', async () => {
  const srv = await fakeServer({ verifyClient: (_info, cb) => cb(false, 401, 'Unauthorized') });
  const tokens = [];
  const c = client(srv.url, { room: 'r', reconnect: () => 0, getToken: () => `t${tokens.push(1)}` });
  const err = await c.connect().catch((e) => e);
  assert.equal(err.code, 'UNAUTHORIZED');
  assert.equal(tokens.length, 2);
  await srv.close();
});

test('full-jitter backoff stays within its bounds and waits longer after 1008', () => {
  const policy = backoff(100, 1000);
  for (let attempt = 1; attempt <= 12; attempt++) {
    const cap = Math.min(1000, 100 * 2 ** (attempt - 1));
    for (let i = 0; i < 50; i++) {
      const d = policy({ attempt, elapsedMs: 0, code: 1006, reason: '' });
      assert.ok(d >= 0 && d <= cap, `attempt ${attempt}: ${d} within [0, ${cap}]`);
      const slow = policy({ attempt, elapsedMs: 0, code: 1008, reason: '' });
      assert.ok(slow >= 400 && slow <= 400 + 1000, `after 1008: ${slow}`);
    }
  }
});
