// The client against two real nodes sharing a real redis-server: every
// method and event across nodes, a node killed with SIGKILL mid-stream and a
// node drained with SIGTERM (`reconnect` hint, close 1001): in both cases the
// client resumes on the other node and misses nothing, sees nothing twice.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { joined, proxy, roomName, startCluster, until } from './support.mjs';

let shared;
before(async () => {
  shared = await startCluster(2);
});
after(() => shared?.stop());

test('across two nodes: presence, signal, broadcast, discover, state, update, leave', async () => {
  const [n1, n2] = shared.nodes;
  const room = roomName();
  const a = await joined(n1.url, { room, peer: 'alice', role: 'host' });
  const b = await joined(n2.url, { room, peer: 'bob', metadata: { tags: ['eu'] } });
  assert.deepEqual(b.info.peers.map((p) => p.peer), ['alice']);
  assert.equal((await a.rec.nth('peer_joined', 1)).peer.peer, 'bob');

  await a.c.signal('bob', { n: 1 });
  assert.deepEqual((await b.rec.nth('signal', 1)).payload, { n: 1 });
  await b.c.broadcast('hi');
  assert.equal((await a.rec.nth('broadcast', 1)).from, 'bob');
  assert.deepEqual((await a.c.discover({ tags: ['eu'] })).map((p) => p.peer), ['bob']);
  assert.deepEqual((await b.c.discover({ role: 'host' })).map((p) => p.peer), ['alice']);
  assert.equal(await b.c.setState({ playing: true }), 1);
  assert.deepEqual((await a.rec.nth('state', 1)).data, { playing: true });
  assert.equal((await a.c.setState({ x: 1 }, { ifVersion: 0 }).catch((e) => e)).code, 'VERSION_CONFLICT');
  await a.c.update({ role: 'guest' });
  assert.equal((await b.rec.nth('peer_updated', 1)).peer.role, 'guest');
  assert.equal((await a.c.signal('nobody', 0).catch((e) => e)).code, 'PEER_NOT_FOUND');
  await a.c.leave();
  assert.deepEqual((await b.rec.nth('peer_left', 1)).reason, 'left');
  b.c.close();
});

/** Bob (on `bobUrl`) sends 1..n to alice, one after the other; resolves when all were accepted. */
async function stream(bob, n) {
  for (let i = 1; i <= n; i++) await bob.c.signal('alice', i, { timeoutMs: 30_000 });
}

const numbers = (n) => Array.from({ length: n }, (_, i) => i + 1);

test('node killed with SIGKILL mid-stream: the client resumes on the other node, nothing lost or doubled', async () => {
  const cluster = await startCluster(2);
  try {
    const [n1, n2] = cluster.nodes;
    const room = roomName();
    const a = await joined([n1.url, n2.url], { room, peer: 'alice', reconnect: () => 50 });
    const b = await joined(n2.url, { room, peer: 'bob' });
    const N = 300;
    const sending = stream(b, N);
    await a.rec.nth('signal', 40);
    await n1.kill('SIGKILL');
    await sending;
    await until(() => a.rec.of('signal').length >= N, `${N} signals at alice`, 30_000);
    assert.deepEqual(a.rec.of('signal').map((s) => s.payload), numbers(N));
    const back = a.rec.of('joined').at(-1);
    assert.equal(back.url, n2.url);
    assert.deepEqual([back.resumed, back.recovered, back.peer], [true, true, 'alice']);
    assert.equal(b.rec.of('peer_left').length, 0, 'bob never saw alice leave');
    // And the room keeps working both ways from the new node.
    await a.c.signal('bob', 'back');
    assert.equal((await b.rec.nth('signal', 1)).payload, 'back');
    a.c.close();
    b.c.close();
  } finally {
    await cluster.stop();
  }
});

test('node drained with SIGTERM: reconnect hint, resume on the other node, nothing lost or doubled', async () => {
  const cluster = await startCluster(2, { DRAIN_TIMEOUT_SECS: '5' });
  try {
    const [n1, n2] = cluster.nodes;
    const room = roomName();
    const a = await joined([n1.url, n2.url], { room, peer: 'alice', reconnect: () => 60_000 });
    const b = await joined(n2.url, { room, peer: 'bob' });
    const N = 200;
    const sending = stream(b, N);
    await a.rec.nth('signal', 40);
    n1.kill('SIGTERM');
    const hint = await a.rec.nth('reconnect', 1);
    assert.equal(hint.reason, 'shutdown');
    assert.ok(hint.after_ms >= 0 && hint.after_ms < 1000);
    await sending;
    // The policy says 60 s: only the hint's short delay gets alice back this soon.
    await until(() => a.rec.of('signal').length >= N, `${N} signals at alice`);
    assert.deepEqual(a.rec.of('signal').map((s) => s.payload), numbers(N));
    assert.equal(a.rec.of('lost')[0].code, 1001);
    const back = a.rec.of('joined').at(-1);
    assert.deepEqual([back.url, back.resumed, back.recovered], [n2.url, true, true]);
    assert.equal(b.rec.of('peer_left').length, 0);
    assert.equal((await n1.exited).code, 0, 'the drained node exits cleanly once its clients left');
    a.c.close();
    b.c.close();
  } finally {
    await cluster.stop();
  }
});

test('a dropped socket resumes on another node', async () => {
  const [n1, n2] = shared.nodes;
  const room = roomName();
  const px = await proxy(n1);
  const a = await joined([px.url, n2.url], { room, peer: 'alice', reconnect: () => 0 });
  const b = await joined(n1.url, { room, peer: 'bob' });
  const N = 100;
  const sending = stream(b, N);
  await a.rec.nth('signal', 30);
  px.cut();
  await sending;
  await until(() => a.rec.of('signal').length >= N, `${N} signals at alice`);
  assert.deepEqual(a.rec.of('signal').map((s) => s.payload), numbers(N));
  assert.equal(a.rec.of('joined').at(-1).url, n2.url);
  a.c.close();
  b.c.close();
  await px.close();
});
