/**
 * The demo page's script (bundled into server/static/demo.js, served at
 * /demo/app.js): a Client for the room, a Mesh for video and a chat data
 * channel, the shared room state as a counter and a topic, and the
 * connection state on screen. `window.demo` exposes the live objects and
 * what the page saw, for the browser tests and for poking at in devtools.
 */
import { Client, SwitchboardError } from '../src/index.js';
import type { ConnectionState, Joined } from '../src/index.js';
import { Mesh } from '../src/webrtc.js';

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const params = new URLSearchParams(location.search);

/** What the page saw, for tests and curious users. */
const seen = {
  chat: [] as { from: string; text: string }[],
  joins: [] as Joined[],
  states: [] as ConnectionState[],
  open: new Set<string>(),
  streams: new Set<string>(),
};
const demo: { client?: Client; mesh?: Mesh; seen: typeof seen; say?: (t: string) => number } = { seen };
(window as any).demo = demo;

function wsUrls(): string[] {
  const list = (params.get('nodes') ?? '').split(',').filter(Boolean);
  return list.length ? list : [`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`];
}

/** A moving, labelled canvas: the video to send when there is no camera. */
function canvasStream(label: string): MediaStream {
  const canvas = document.createElement('canvas');
  canvas.width = 320;
  canvas.height = 240;
  const g = canvas.getContext('2d')!;
  let hue = Math.floor(Math.random() * 360);
  // A timer, not requestAnimationFrame: it keeps drawing in background tabs.
  setInterval(() => {
    hue = (hue + 2) % 360;
    g.fillStyle = `hsl(${hue} 60% 45%)`;
    g.fillRect(0, 0, 320, 240);
    g.fillStyle = '#fff';
    g.font = '24px system-ui, sans-serif';
    g.fillText(label, 16, 40);
    g.font = '16px system-ui, sans-serif';
    g.fillText(new Date().toLocaleTimeString(), 16, 68);
  }, 100);
  return canvas.captureStream(10);
}

async function localMedia(label: string): Promise<MediaStream> {
  if (params.get('camera') !== '0' && navigator.mediaDevices?.getUserMedia) {
    try {
      return await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 }, audio: true });
    } catch {
      // no camera, or permission refused: fall back to a generated stream
    }
  }
  return canvasStream(label);
}

function line(text: string, cls = '') {
  const log = $('log');
  const p = document.createElement('div');
  p.textContent = text;
  p.className = cls;
  log.append(p);
  log.scrollTop = log.scrollHeight;
}

function renderPeers(client: Client, mesh: Mesh) {
  const ul = $('peers');
  ul.replaceChildren();
  const me = document.createElement('li');
  me.innerHTML = '<span></span><span class="rtc">you</span>';
  me.firstElementChild!.textContent = client.peer ?? '…';
  ul.append(me);
  for (const p of client.peers.values()) {
    const li = document.createElement('li');
    li.dataset.peer = p.peer;
    const name = document.createElement('span');
    name.textContent = p.peer;
    const rtc = document.createElement('span');
    rtc.className = 'rtc';
    rtc.textContent = (mesh.links.get(p.peer)?.pc.connectionState ?? '—') + (seen.open.has(p.peer) ? ' · chat' : '');
    li.append(name, rtc);
    ul.append(li);
  }
}

function renderState(client: Client) {
  const { version, data } = client.roomState;
  $('count').textContent = String(Number(data.count ?? 0));
  $('topicnow').textContent = typeof data.topic === 'string' && data.topic ? data.topic : '—';
  $('version').textContent = String(version);
}

function showConnection(state: ConnectionState, info = '') {
  const el = $('conn');
  el.dataset.state = state;
  el.textContent = state;
  $('conninfo').textContent = info;
}

/** Adds one to the shared counter, retrying when another peer changed the state first. */
async function increment(client: Client) {
  for (let tries = 0; tries < 5; tries++) {
    const { version, data } = client.roomState;
    try {
      await client.setState({ count: Number(data.count ?? 0) + 1 }, { ifVersion: version });
      return;
    } catch (e) {
      if (!(e instanceof SwitchboardError) || e.code !== 'VERSION_CONFLICT') throw e;
      // the `state` event with the newer version is on its way or already here
      client.roomState = { ...client.roomState, version: e.version ?? version };
    }
  }
}

async function join(room: string, name: string) {
  const stream = await localMedia(name || 'guest');
  ($('local') as HTMLVideoElement).srcObject = stream;
  const client = new Client({ url: wsUrls(), room, peer: name || undefined, pingIntervalMs: 5000, pongTimeoutMs: 5000 });
  const mesh = new Mesh(client, { stream, dataChannel: 'chat' });
  Object.assign(demo, { client, mesh, say: (t: string) => send(t) });
  const peers = () => renderPeers(client, mesh);

  client.on('connection', (s) => {
    seen.states.push(s);
    if (s !== 'joined') showConnection(s, s === 'reconnecting' ? 'connection lost; resuming…' : '');
  });
  client.on('joined', (j) => {
    seen.joins.push(j);
    const how = seen.joins.length === 1 && !j.resumed ? 'joined' : j.resumed ? 'resumed' : 'rejoined';
    showConnection('joined', `${how} as ${j.peer} via ${new URL(j.url).host}${j.recovered ? '' : ' · recovered: false (state re-read)'}`);
    $('localcap').textContent = `${j.peer} (you)`;
    peers();
    renderState(client);
    if (seen.joins.length > 1) line(j.recovered ? `${how}: nothing missed` : `${how}: some events were lost, state re-read`, 'sys');
  });
  client.on('lost', (why) => line(`connection lost (${why.code}); reconnecting`, 'sys'));
  client.on('disconnected', (d) => {
    showConnection('disconnected', `${d.code}: ${d.reason}`);
    for (const id of ['send', 'inc', 'settopic', 'leave']) ($(id) as HTMLButtonElement).disabled = true;
    ($('join') as HTMLButtonElement).disabled = false;
  });
  client.on('peer_joined', (m) => (line(`${m.peer.peer} joined`, 'sys'), peers()));
  client.on('peer_left', (m) => (line(`${m.peer} left (${m.reason})`, 'sys'), seen.open.delete(m.peer), peers()));
  client.on('peer_updated', peers);
  client.on('state', () => renderState(client));

  mesh.on('state', peers);
  mesh.on('open', ({ peer }) => (seen.open.add(peer), peers()));
  mesh.on('closed', ({ peer }) => {
    seen.open.delete(peer);
    document.querySelector(`figure[data-peer="${CSS.escape(peer)}"]`)?.remove();
    peers();
  });
  mesh.on('stream', ({ peer, stream: remote }) => {
    seen.streams.add(peer);
    let fig = document.querySelector<HTMLElement>(`figure[data-peer="${CSS.escape(peer)}"]`);
    if (!fig) {
      fig = document.createElement('figure');
      fig.dataset.peer = peer;
      const video = document.createElement('video');
      video.autoplay = video.playsInline = true;
      const cap = document.createElement('figcaption');
      cap.textContent = peer;
      fig.append(video, cap);
      $('videos').append(fig);
    }
    fig.querySelector('video')!.srcObject = remote;
  });
  mesh.on('message', ({ peer, data }) => {
    try {
      const m = JSON.parse(String(data));
      if (typeof m.text === 'string') {
        seen.chat.push({ from: peer, text: m.text });
        line(`${peer}: ${m.text}`);
      }
    } catch {
      // not a chat message
    }
  });

  function send(text: string) {
    const n = mesh.send(JSON.stringify({ text }));
    line(`${client.peer}: ${text}${n ? '' : ' (nobody connected)'}`, 'me');
    return n;
  }
  $('chatform').onsubmit = (e) => {
    e.preventDefault();
    const input = $<HTMLInputElement>('msg');
    if (input.value.trim()) send(input.value.trim());
    input.value = '';
  };
  $('inc').onclick = () => increment(client).catch((e) => line(`counter: ${e.message}`, 'sys'));
  $('topicform').onsubmit = (e) => {
    e.preventDefault();
    client.setState({ topic: $<HTMLInputElement>('topic').value }).catch((err) => line(`topic: ${err.message}`, 'sys'));
  };
  $('leave').onclick = () => client.leave().catch(() => {});
  for (const id of ['send', 'inc', 'settopic', 'leave']) ($(id) as HTMLButtonElement).disabled = false;
  ($('join') as HTMLButtonElement).disabled = true;
  await client.connect();
}

$('room').setAttribute('value', params.get('room') ?? 'lobby');
$('name').setAttribute('value', params.get('name') ?? '');
$('joinform').onsubmit = (e) => {
  e.preventDefault();
  const room = $<HTMLInputElement>('room').value.trim();
  const name = $<HTMLInputElement>('name').value.trim();
  join(room, name).catch((err) => showConnection('disconnected', String(err?.message ?? err)));
};
if (params.get('join') === '1') $('join').click();
