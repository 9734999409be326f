// End to end in a real browser: the demo page served by real nodes, in
// headless Chromium. Two and three pages form a WebRTC mesh (video and a
// chat data channel) through one node and through two nodes sharing Redis;
// a page reload resumes its peer from sessionStorage; a node killed with
// SIGKILL mid-call: its page resumes on the other node and the call goes
// on. Screenshots go to clients/js/artifacts/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { roomName, startCluster } from '../test/support.mjs';
import { connectedTo, inPage, launch, openDemo, received, screenshot } from './browser.mjs';

let browser;
let cluster;
before(async () => {
  browser = await launch();
  cluster = await startCluster(2);
});
after(async () => {
  await browser?.close();
  await cluster?.stop();
});

async function closeAll(pages) {
  for (const p of pages) await p.context.close();
}

test('two pages on one node: video both ways and chat over the data channel', async () => {
  const [n1] = cluster.nodes;
  const room = roomName();
  const alice = await openDemo(browser, n1, { room, name: 'alice' });
  const bob = await openDemo(browser, n1, { room, name: 'bob' });
  await connectedTo(alice, ['bob']);
  await connectedTo(bob, ['alice']);
  assert.equal(await alice.page.evaluate(() => window.demo.say('hello bob')), 1);
  await received(bob, 'alice', 'hello bob');
  assert.equal(await bob.page.evaluate(() => window.demo.say('hi alice')), 1);
  await received(alice, 'bob', 'hi alice');
  // The shared room state: bob's counter click shows on alice's page.
  await bob.page.click('#inc');
  await inPage(alice, () => document.getElementById('count').textContent === '1', undefined, 'the counter at 1');
  assert.equal(await alice.page.textContent('#conn'), 'joined');
  await screenshot(alice, 'two-pages-alice.png');
  await screenshot(bob, 'two-pages-bob.png');
  await closeAll([alice, bob]);
});

test('three pages across two nodes form a full mesh', async () => {
  const [n1, n2] = cluster.nodes;
  const room = roomName();
  const names = ['ann', 'ben', 'cat'];
  const homes = [n1, n2, n2];
  const pages = [];
  for (const [i, name] of names.entries()) {
    const home = homes[i];
    const other = home === n1 ? n2 : n1;
    // cat has no camera: the others get its generated canvas video.
    pages.push(await openDemo(browser, home, { room, name, wsUrls: [home.url, other.url], camera: name !== 'cat' }));
  }
  for (const [i, p] of pages.entries()) await connectedTo(p, names.filter((_, j) => j !== i));
  for (const [i, p] of pages.entries()) {
    assert.equal(await p.page.evaluate((t) => window.demo.say(t), `from ${names[i]}`), 2);
  }
  for (const [i, p] of pages.entries()) {
    for (const [j, from] of names.entries()) if (j !== i) await received(p, from, `from ${from}`);
  }
  await screenshot(pages[0], 'three-pages-two-nodes.png');
  await screenshot(pages[2], 'three-pages-canvas-video.png');
  await closeAll(pages);
});

test('a page reload resumes the same peer from sessionStorage and the call is rebuilt', async () => {
  const [n1] = cluster.nodes;
  const room = roomName();
  const alice = await openDemo(browser, n1, { room, name: 'alice' });
  const bob = await openDemo(browser, n1, { room, name: 'bob' });
  await connectedTo(alice, ['bob']);
  await connectedTo(bob, ['alice']);
  await alice.page.reload();
  const back = await inPage(alice, () => window.demo?.seen.joins[0], undefined, 'the reloaded page in the room');
  assert.deepEqual([back.peer, back.resumed], ['alice', true]);
  // The new page has no RTCPeerConnection of the old one: both sides rebuild theirs.
  await connectedTo(alice, ['bob']);
  await alice.page.evaluate(() => window.demo.say('reloaded'));
  await received(bob, 'alice', 'reloaded');
  assert.equal(await bob.page.evaluate(() => document.getElementById('log').innerText.includes('alice left')), false);
  await screenshot(alice, 'reloaded-page-resumed.png');
  await closeAll([alice, bob]);
});

test('a node killed mid-call: its page resumes on the other node and the call goes on', async () => {
  const own = await startCluster(2);
  try {
    const [n1, n2] = own.nodes;
    const room = roomName();
    const alice = await openDemo(browser, n1, { room, name: 'alice', wsUrls: [n1.url, n2.url] });
    const bob = await openDemo(browser, n2, { room, name: 'bob', wsUrls: [n2.url, n1.url] });
    await connectedTo(alice, ['bob']);
    await connectedTo(bob, ['alice']);
    await alice.page.evaluate(() => window.demo.say('before'));
    await received(bob, 'alice', 'before');

    await n1.kill('SIGKILL');
    const back = await inPage(
      alice,
      () => {
        const j = window.demo.seen.joins;
        return j.length >= 2 && j.at(-1);
      },
      undefined,
      'alice back in the room',
    );
    assert.equal(back.resumed, true);
    assert.equal(back.recovered, true);
    assert.equal(new URL(back.url).port, String(n2.port));
    assert.deepEqual(
      await alice.page.evaluate(() => window.demo.seen.states),
      ['connecting', 'joined', 'reconnecting', 'joined'],
    );
    // Bob never saw alice leave, and the call itself never dropped.
    assert.equal(await bob.page.evaluate(() => document.getElementById('log').innerText.includes('alice left')), false);
    assert.equal(await alice.page.evaluate(() => window.demo.mesh.links.get('bob').pc.connectionState), 'connected');
    await alice.page.evaluate(() => window.demo.say('after'));
    await received(bob, 'alice', 'after');
    await bob.page.evaluate(() => window.demo.say('still here'));
    await received(alice, 'bob', 'still here');
    // Signaling works after the resume: a newcomer on the surviving node connects to both.
    const cat = await openDemo(browser, n2, { room, name: 'cat', wsUrls: [n2.url] });
    await connectedTo(cat, ['alice', 'bob']);
    await connectedTo(alice, ['bob', 'cat']);
    await screenshot(alice, 'node-killed-alice-resumed.png');
    await screenshot(cat, 'node-killed-newcomer.png');
    await closeAll([alice, bob, cat]);
  } finally {
    await own.stop();
  }
});
