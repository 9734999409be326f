// The client against one real embedded node: every method and event, typed
// errors, request timeouts and queueing, resume after a dropped or dead
// socket with nothing missed or duplicated, 4000 and 1008 as the server
// produces them, the session kept in storage, and token refresh with auth on.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { SwitchboardError } from '../dist/index.js';
import { client, expOf, joined, memoryStorage, mint, proxy, raw, record, roomName, startNode, until } from './support.mjs';

let node;
before(async () => {
  node = await startNode({}, 'embedded');
});
after(() => node?.kill());

test('join, presence, signal, broadcast, discover, state, update and leave', async () => {
  const room = roomName();
  const a = await joined(node.url, { room, peer: 'alice', metadata: { tags: ['gpu'], properties: { vram: 24 } } });
  assert.equal(a.info.peer, 'alice');
  assert.deepEqual(a.info.peers, []);
  assert.equal(a.info.resumed, false);
  assert.equal(a.info.recovered, true);
  assert.equal(a.c.connectionState, 'joined');
  assert.deepEqual(a.rec.of('connection'), ['connecting', 'joined']);

  const b = await joined(node.url, { room, role: 'viewer' });
  assert.match(b.info.peer, /^p-/, 'the server assigns an id when none is asked for');
  assert.deepEqual(b.info.peers.map((p) => p.peer), ['alice']);
  const bob = b.info.peer;
  const pj = await a.rec.nth('peer_joined', 1);
  assert.equal(pj.peer.peer, bob);
  assert.equal(pj.peer.role, 'viewer');
  assert.ok(a.c.peers.has(bob));

  await a.c.signal(bob, { sdp: 'offer' });
  const sig = await b.rec.nth('signal', 1);
  assert.equal(sig.from, 'alice');
  assert.deepEqual(sig.payload, { sdp: 'offer' });

  await b.c.broadcast([1, 'two']);
  assert.deepEqual((await a.rec.nth('broadcast', 1)).payload, [1, 'two']);
  assert.equal(b.rec.of('broadcast').length, 0, 'a broadcast does not come back to its sender');

  assert.deepEqual((await b.c.discover({ tags: ['gpu'] })).map((p) => p.peer), ['alice']);
  assert.deepEqual(await b.c.discover({ properties: { vram: { $gte: 32 } } }), []);
  assert.deepEqual((await a.c.discover()).map((p) => p.peer), [bob]);

  assert.equal(await a.c.setState({ topic: 'hello' }), 1);
  assert.equal(await b.c.setState({ n: 1 }, { ifVersion: 1 }), 2);
  for (const side of [a, b]) {
    const st = await side.rec.nth('state', 2);
    assert.deepEqual(st, { ...st, version: 2, data: { topic: 'hello', n: 1 }, by: bob });
    assert.deepEqual(side.c.roomState, { version: 2, data: { topic: 'hello', n: 1 } });
  }
  const conflict = await a.c.setState({ n: 2 }, { ifVersion: 1 }).catch((e) => e);
  assert.ok(conflict instanceof SwitchboardError);
  assert.equal(conflict.code, 'VERSION_CONFLICT');
  assert.equal(conflict.version, 2);
  assert.equal(conflict.retryable, false);

  await b.c.update({ metadata: { tags: ['cpu'] } });
  const upd = await a.rec.nth('peer_updated', 1);
  assert.deepEqual(upd.peer.metadata, { tags: ['cpu'] });
  assert.equal(upd.peer.role, 'viewer', 'fields update does not carry stay');

  const missing = await a.c.signal('nobody', 1).catch((e) => e);
  assert.equal(missing.code, 'PEER_NOT_FOUND');
  assert.equal(missing.retryable, false);

  await b.c.leave();
  assert.equal(b.c.connectionState, 'disconnected');
  assert.deepEqual(b.rec.of('disconnected'), [{ code: 'LEFT', reason: 'left the room' }]);
  const left = await a.rec.nth('peer_left', 1);
  assert.deepEqual([left.peer, left.reason], [bob, 'left']);
  assert.ok(!a.c.peers.has(bob));
  assert.equal((await b.c.broadcast(1).catch((e) => e)).code, 'CLOSED', 'nothing goes out after leave');

  // Alice's events (peer_joined, broadcast, two state, peer_updated, peer_left) carry seq 1, 2, 3, …
  const seqs = a.rec.all.filter((e) => e.ev && typeof e.ev.seq === 'number').map((e) => e.ev.seq);
  assert.deepEqual(seqs, seqs.map((_, i) => i + 1));
  a.c.close();
});

test('a socket dropped mid-stream resumes: every event once, in order, and the others see nothing', async () => {
  const room = roomName();
  const px = await proxy(node);
  const storage = memoryStorage();
  const a = await joined(px.url, { room, peer: 'alice', storage });
  const b = await joined(node.url, { room, peer: 'bob' });
  const N = 200;
  let sent = 0;
  // Bob streams numbered signals; the socket of alice is cut after 50 arrived.
  const sending = (async () => {
    for (let i = 1; i <= N; i++) {
      await b.c.signal('alice', i);
      sent = i;
    }
  })();
  await a.rec.nth('signal', 50);
  px.cut();
  await sending;
  await until(() => a.rec.of('signal').length >= N, `${N} signals at alice`);
  assert.deepEqual(a.rec.of('signal').map((s) => s.payload), Array.from({ length: N }, (_, i) => i + 1));
  const js = a.rec.of('joined');
  assert.equal(js.length, 2);
  assert.deepEqual([js[1].resumed, js[1].recovered, js[1].peer], [true, true, 'alice']);
  assert.deepEqual(a.rec.of('connection'), ['connecting', 'joined', 'reconnecting', 'joined']);
  assert.equal(a.rec.of('lost').length, 1);
  assert.equal(b.rec.of('peer_left').length + b.rec.of('peer_joined').length, 0, 'bob saw alice neither leave nor come back');
  assert.equal(sent, N);
  // The stored last seq follows what was processed.
  const saved = JSON.parse(storage.getItem(`switchboard:${room}`));
  assert.equal(saved.peer, 'alice');
  assert.equal(saved.lastSeq, a.c.lastSeq);
  assert.equal(a.c.lastSeq, a.rec.of('signal').at(-1).seq);
  a.c.close();
  b.c.close();
  await px.close();
});

test('requests wait while reconnecting; one whose reply was lost rejects retryable and is not sent again', async () => {
  const room = roomName();
  const px = await proxy(node);
  const a = await joined(px.url, { room, peer: 'alice' });
  const b = await joined(node.url, { room, peer: 'bob' });

  // The server gets the broadcast and answers, but the answer never arrives.
  px.holdReplies();
  const lostReply = a.c.broadcast('first');
  await b.rec.nth('broadcast', 1);
  px.cut();
  const err = await lostReply.catch((e) => e);
  assert.ok(err instanceof SwitchboardError);
  assert.equal(err.code, 'CONNECTION_LOST');
  assert.equal(err.retryable, true);

  // Made while reconnecting: queued, sent once after the resume.
  assert.notEqual(a.c.connectionState, 'joined');
  const queued = a.c.broadcast('second');
  await queued;
  await a.rec.nth('joined', 2);
  await b.rec.nth('broadcast', 2);
  // A last round trip from bob's side orders everything alice sent before it.
  await a.c.signal('bob', 'done');
  await b.rec.nth('signal', 1);
  assert.deepEqual(b.rec.of('broadcast').map((m) => m.payload), ['first', 'second']);
  a.c.close();
  b.c.close();
  await px.close();
});

test('a request times out when the client cannot get back in time, and is then never sent', async () => {
  const room = roomName();
  const px = await proxy(node);
  const a = await joined(px.url, { room, peer: 'alice', reconnect: () => 1000 });
  const b = await joined(node.url, { room, peer: 'bob' });
  px.cut();
  await a.rec.nth('lost', 1);
  const err = await a.c.broadcast('late', { timeoutMs: 100 }).catch((e) => e);
  assert.equal(err.code, 'TIMEOUT');
  assert.equal(err.retryable, true);
  assert.match(err.message, /not sent/);
  await a.rec.nth('joined', 2);
  // Everything alice sent before this signal has reached bob when it arrives.
  await a.c.signal('bob', 'after');
  await b.rec.nth('signal', 1);
  assert.equal(b.rec.of('broadcast').length, 0, 'the timed-out request never went out');
  a.c.close();
  b.c.close();
  await px.close();
});

test('a silent dead socket is found by the client ping and resumed, with what was written into it', async () => {
  const room = roomName();
  const px = await proxy(node);
  const a = await joined(px.url, { room, peer: 'alice', pingIntervalMs: 200, pongTimeoutMs: 300 });
  px.freeze(); // nothing passes, nothing closes
  // Alice's first events (seq 1 and 2) are written into the dead socket.
  const b = await joined(node.url, { room, peer: 'bob' });
  await b.c.signal('alice', 'while frozen');
  const lost = await a.rec.nth('lost', 1);
  assert.equal(lost.code, 'PING_TIMEOUT');
  const j = await a.rec.nth('joined', 2);
  assert.equal(j.resumed, true);
  assert.deepEqual((await a.rec.nth('signal', 1)).payload, 'while frozen');
  assert.equal(a.rec.of('peer_joined')[0].peer.peer, 'bob');
  assert.deepEqual(a.rec.all.filter((e) => e.ev?.seq).map((e) => e.ev.seq), [1, 2]);
  a.c.close();
  b.c.close();
  await px.close();
});

test('4000: the session resumed on another connection ends this client', async () => {
  const room = roomName();
  const storage = memoryStorage();
  const a = await joined(node.url, { room, peer: 'alice', storage });
  const { session } = JSON.parse(storage.getItem(`switchboard:${room}`));
  const other = await raw(node.url);
  other.send({ type: 'join', id: 1, room, resume: session });
  const j = await other.next((m) => m.type === 'joined');
  assert.equal(j.peer, 'alice');
  const d = await a.rec.nth('disconnected', 1);
  assert.equal(d.code, 4000);
  assert.equal(a.c.connectionState, 'disconnected');
  assert.equal(a.rec.of('lost').length, 0, 'no reconnect after 4000');
  other.close();
});

test('a page reload resumes the stored session: same peer, replay of what came meanwhile', async () => {
  const room = roomName();
  const storage = memoryStorage();
  const first = await joined(node.url, { room, storage });
  const me = first.info.peer;
  const b = await joined(node.url, { room, peer: 'bob' });
  await b.c.signal(me, 'seen');
  await first.rec.nth('signal', 1);
  first.c.close(); // the page goes away without leaving
  await b.c.signal(me, 'while away');
  const second = await joined(node.url, { room, storage });
  assert.equal(second.info.peer, me);
  assert.equal(second.info.resumed, true);
  assert.equal(second.info.recovered, true);
  assert.deepEqual((await second.rec.nth('signal', 1)).payload, 'while away');
  assert.equal(second.rec.of('signal').length, 1, 'what the first page processed is not replayed');
  assert.equal(b.rec.of('peer_left').length, 0);
  second.c.close();
  b.c.close();
});

test('1008 after repeated rate limiting: typed RATE_LIMITED errors, then backoff and resume', async () => {
  const strict = await startNode({ RATE_LIMIT_PER_SEC: '1', RATE_LIMIT_BURST: '3', RATE_LIMIT_MAX_STRIKES: '3' }, 'strict');
  try {
    const room = roomName();
    const seen = [];
    const a = await joined(strict.url, {
      room,
      peer: 'alice',
      reconnect: (ctx) => {
        seen.push(ctx);
        return 50;
      },
    });
    // One request at a time, as an app that awaits its calls sends them.
    const codes = [];
    for (let i = 0; i < 20 && a.rec.of('lost').length === 0; i++) {
      codes.push(await a.c.broadcast(i).then(() => 'ok', (e) => (assert.ok(e.retryable, e.code), e.code)));
    }
    assert.equal(codes[0], 'ok');
    assert.ok(codes.includes('RATE_LIMITED'), `some were rate limited: ${codes}`);
    const lost = await a.rec.nth('lost', 1);
    assert.equal(lost.code, 1008);
    assert.equal(seen[0].code, 1008);
    assert.equal(seen[0].attempt, 1);
    const j = await a.rec.nth('joined', 2);
    assert.equal(j.resumed, true);
    a.c.close();
  } finally {
    await strict.kill();
  }
});

test('token refresh: getToken runs on every reconnect; a refused token ends the client', async () => {
  const secret = 'test-secret-for-the-js-client';
  const authed = await startNode({ JWT_SECRET: secret, JWT_LEEWAY_SECS: '0' }, 'auth');
  try {
    const room = roomName();
    const px = await proxy(authed);
    const short = mint(secret, 'alice', [`${room}*`], '1s');
    const tokens = [short];
    const given = [];
    const a = await joined(px.url, {
      room,
      getToken: () => {
        const t = tokens.shift() ?? mint(secret, 'alice', [room]);
        given.push(t);
        return t;
      },
    });
    assert.equal(a.info.peer, 'alice', 'the peer id comes from the token');
    // Once the first token has expired, only a fresh one gets back in.
    await until(() => Date.now() / 1000 > expOf(short) + 1, 'the first token to expire', 5000);
    px.cut();
    const j = await a.rec.nth('joined', 2);
    assert.equal(j.resumed, true);
    assert.equal(given.length, 2);
    assert.notEqual(given[1], short);

    // A getToken that keeps handing out the expired token: one retry, then UNAUTHORIZED.
    let calls = 0;
    const b = client(px.url, { room, getToken: () => (++calls, short) });
    const rec = record(b);
    const err = await b.connect().catch((e) => e);
    assert.equal(err.code, 'UNAUTHORIZED');
    assert.equal(rec.of('disconnected')[0].code, 'UNAUTHORIZED');
    assert.equal(calls, 2);

    // A join outside the token's rooms is FORBIDDEN: terminal, no retry.
    const c = client(authed.url, { room: 'elsewhere', getToken: () => mint(secret, 'carol', [room]) });
    const crec = record(c);
    assert.equal((await c.connect().catch((e) => e)).code, 'FORBIDDEN');
    assert.equal(crec.of('lost').length, 0);
    a.c.close();
    await px.close();
  } finally {
    await authed.kill();
  }
});
