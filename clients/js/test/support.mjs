// Test support: real `switchboard` processes (embedded, or nodes sharing a
// real redis-server), a TCP proxy that can cut or freeze the client's socket,
// a raw WebSocket client for the other side of a test, and bounded waits on
// events (never sleeps).
//
// Every process started here is killed when the test process exits.
import { spawn, execFileSync } from 'node:child_process';
import net from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { Client } from '../dist/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..', '..', '..');

/** The binary under test: SWITCHBOARD_BIN, else the workspace's debug build. */
export const BIN =
  process.env.SWITCHBOARD_BIN ?? join(process.env.CARGO_TARGET_DIR ?? join(repo, 'target'), 'debug', 'switchboard');

/** Longest wait of any single condition in these tests. */
export const WAIT_MS = 20_000;

const children = new Set();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

/** A free TCP port on 127.0.0.1 (for redis-server, which cannot pick one itself). */
async function freePort() {
  const srv = net.createServer();
  await new Promise((ok) => srv.listen(0, '127.0.0.1', ok));
  const { port } = srv.address();
  await new Promise((ok) => srv.close(ok));
  return port;
}

/** Resolves with the result of `check(line)` for the first line where it is truthy. */
function watchLines(stream, onLine) {
  let buf = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk) => {
    buf += chunk;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      onLine(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
}

/**
 * Starts one node with HOST=127.0.0.1 PORT=0 and `env`; resolves once it
 * logged `listening`. The host's environment does not leak in.
 */
export async function startNode(env = {}, name = 'node') {
  const proc = spawn(BIN, [], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, HOST: '127.0.0.1', PORT: '0', LOG_FORMAT: 'json', RUST_LOG: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(proc);
  const output = [];
  const exited = new Promise((ok) => proc.on('exit', (code, signal) => {
    children.delete(proc);
    ok({ code, signal });
  }));
  const addr = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`${name} did not log "listening" within ${WAIT_MS} ms:\n${output.join('\n')}`)), WAIT_MS);
    watchLines(proc.stdout, (line) => {
      output.push(line);
      try {
        const v = JSON.parse(line);
        if (v.fields?.message === 'listening') {
          clearTimeout(timer);
          ok(v.fields.addr);
        }
      } catch {
        // not a JSON log line
      }
    });
    watchLines(proc.stderr, (line) => output.push(`stderr: ${line}`));
    proc.on('error', (e) => fail(new Error(`cannot start ${BIN}: ${e.message} (build it, or set SWITCHBOARD_BIN)`)));
    exited.then(({ code }) => fail(new Error(`${name} exited (${code}) before listening:\n${output.join('\n')}`)));
  });
  return {
    name,
    addr,
    port: Number(addr.split(':').pop()),
    url: `ws://${addr}/ws`,
    http: `http://${addr}`,
    output,
    exited,
    kill(signal = 'SIGKILL') {
      proc.kill(signal);
      return exited;
    },
  };
}

/** A real redis-server on a free loopback port, without persistence. */
export async function startRedis() {
  for (let tries = 0; ; tries++) {
    const port = await freePort();
    const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(proc);
    const ready = await new Promise((ok) => {
      const timer = setTimeout(() => ok(false), 10_000);
      watchLines(proc.stdout, (line) => {
        if (line.includes('Ready to accept connections')) {
          clearTimeout(timer);
          ok(true);
        }
      });
      proc.on('exit', () => {
        clearTimeout(timer);
        ok(false);
      });
    });
    if (ready) {
      return {
        url: `redis://127.0.0.1:${port}`,
        kill() {
          proc.kill('SIGKILL');
        },
      };
    }
    proc.kill('SIGKILL');
    children.delete(proc);
    if (tries >= 3) throw new Error('redis-server did not start (is it installed?)');
  }
}

/** Settings that make a cluster notice a dead node within about a second. */
export const FAST_CLUSTER = { HEARTBEAT_INTERVAL_MS: '200', NODE_TTL_MS: '1000' };

/** A redis-server and `n` nodes sharing it. */
export async function startCluster(n = 2, env = {}) {
  const redis = await startRedis();
  const nodes = [];
  for (let i = 0; i < n; i++) {
    nodes.push(await startNode({ REDIS_URL: redis.url, SERVER_ID: `node-${i + 1}`, ...FAST_CLUSTER, ...env }, `node-${i + 1}`));
  }
  return {
    redis,
    nodes,
    async stop() {
      await Promise.all(nodes.map((n) => n.kill()));
      redis.kill();
    },
  };
}

/**
 * A TCP proxy in front of a node, so a test can break the client's socket
 * the way a network does: `cut()` resets every connection through it,
 * `freeze()` makes the current ones silently drop everything (a dead link
 * that no close ever reports), `holdReplies()` keeps what the server sends
 * from reaching the client. New connections pass normally.
 */
export async function proxy(target) {
  const [host, port] = [target.addr.slice(0, target.addr.lastIndexOf(':')), Number(target.addr.split(':').pop())];
  const pairs = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(port, host);
    const pair = { client, upstream, held: false };
    pairs.add(pair);
    client.on('data', (d) => !pair.frozen && upstream.write(d));
    upstream.on('data', (d) => !pair.frozen && !pair.held && client.write(d));
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    for (const s of [client, upstream]) {
      s.on('error', end);
      s.on('close', end);
    }
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  const addr = `127.0.0.1:${server.address().port}`;
  return {
    addr,
    url: `ws://${addr}/ws`,
    get connections() {
      return pairs.size;
    },
    cut() {
      for (const p of [...pairs]) {
        p.client.resetAndDestroy?.() ?? p.client.destroy();
        p.upstream.destroy();
      }
    },
    freeze() {
      for (const p of pairs) p.frozen = true;
    },
    holdReplies() {
      for (const p of pairs) p.held = true;
    },
    close() {
      this.cut();
      return new Promise((ok) => server.close(ok));
    },
  };
}

/** Resolves when `cond()` holds, checked now and on each call of the returned `poke`; rejects after `ms`. */
export function until(cond, what, ms = WAIT_MS) {
  return new Promise((ok, fail) => {
    const check = () => {
      let v;
      try {
        v = cond();
      } catch (e) {
        clearInterval(iv);
        clearTimeout(timer);
        fail(e);
        return;
      }
      if (v) {
        clearInterval(iv);
        clearTimeout(timer);
        ok(v);
      }
    };
    // Conditions depend on events from sockets: re-check often, bounded by `ms`.
    const iv = setInterval(check, 5);
    const timer = setTimeout(() => {
      clearInterval(iv);
      fail(new Error(`timed out after ${ms} ms waiting for ${what}`));
    }, ms);
    check();
  });
}

const EVENTS = ['connection', 'joined', 'disconnected', 'lost', 'peer_joined', 'peer_left', 'peer_updated', 'signal', 'broadcast', 'state', 'server', 'reconnect', 'error'];

/** Records every event of a client in order: `rec.of('signal')`, `await rec.next('joined')`. */
export function record(client) {
  const all = [];
  for (const type of EVENTS) client.on(type, (ev) => all.push({ type, ev }));
  return {
    all,
    of(type) {
      return all.filter((e) => e.type === type).map((e) => e.ev);
    },
    /** Waits for the n-th (1-based) event of `type` that matches `pred`, counting those already seen. */
    async nth(type, n, pred = () => true, ms) {
      await until(() => this.of(type).filter(pred).length >= n, `${n} ${type} event(s)`, ms);
      return this.of(type).filter(pred)[n - 1];
    },
  };
}

/** A storage like sessionStorage, kept in memory. */
export function memoryStorage() {
  const m = new Map();
  return {
    map: m,
    getItem: (k) => (m.has(k) ? m.get(k) : null),
    setItem: (k, v) => void m.set(k, String(v)),
    removeItem: (k) => void m.delete(k),
  };
}

let rooms = 0;
/** A room name of its own for each test. */
export function roomName() {
  return `r${process.pid}-${++rooms}`;
}

/** A client on `url` (a string or a list) with the test's WebSocket, fast liveness settings and the given options. */
export function client(url, opts = {}) {
  return new Client({ url, WebSocket, storage: null, ...opts });
}

/** Connects `client(…)` and waits for its first `joined`. */
export async function joined(url, opts) {
  const c = client(url, opts);
  const rec = record(c);
  const info = await c.connect();
  return { c, rec, info };
}

/** A raw protocol connection: `send(obj)`, `await next(pred)`, `closed` (resolves with {code, reason}). */
export async function raw(url) {
  const ws = new WebSocket(url);
  const inbox = [];
  const closed = new Promise((ok) => ws.on('close', (code, reason) => ok({ code, reason: String(reason) })));
  ws.on('message', (d) => inbox.push(JSON.parse(String(d))));
  await new Promise((ok, fail) => {
    ws.once('open', ok);
    ws.once('error', fail);
  });
  return {
    ws,
    inbox,
    closed,
    send(obj) {
      ws.send(JSON.stringify(obj));
    },
    async next(pred, what = 'a message') {
      await until(() => inbox.find(pred), what);
      const i = inbox.findIndex(pred);
      return inbox.splice(i, 1)[0];
    },
    close() {
      ws.close();
    },
  };
}

/** Mints a JWT with the binary's own `token` subcommand. */
export function mint(secret, sub, rooms, ttl = '1h') {
  const args = ['token', '--sub', sub, '--ttl', ttl, '--secret', secret];
  for (const r of rooms) args.push('--room', r);
  return execFileSync(BIN, args, { encoding: 'utf8', env: { PATH: process.env.PATH } }).trim();
}

/** The `exp` claim of a JWT, in Unix seconds. */
export function expOf(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString()).exp;
}
