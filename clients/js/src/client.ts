/**
 * The Switchboard client: one object per joined room. It owns the WebSocket,
 * joins, answers every request's promise from the reply with the same id,
 * emits the room's events once and in `seq` order, and, when the connection
 * breaks, reconnects (to the same or another node) and resumes the session
 * with its token and the last `seq` it processed, so that nothing sent to
 * this peer while it was away is lost or seen twice.
 *
 * Rules it follows (docs/protocol.md, Recovery and close codes):
 * - Requests wait while the client is not joined and go out after the (re)join;
 *   one sent on a socket that closed before its reply rejects with the
 *   retryable CONNECTION_LOST: nothing is ever sent twice by the client itself.
 * - 4000 (resumed elsewhere) and 4003 (kicked) end the client; 4001 (session
 *   lost) forgets the session and joins afresh; 1008 backs off longer; a
 *   `reconnect` hint from a draining node reconnects after a random part of
 *   its `after_ms`; any other close reconnects by the policy.
 * - A socket that goes quiet is probed with the protocol's own `ping`; no
 *   answer in time counts as a lost connection.
 */

import { Emitter } from './emitter.js';
import { SwitchboardError } from './errors.js';
import type {
  BroadcastEvent,
  ConnectionState,
  DiscoverFilters,
  Disconnected,
  Joined,
  LostReason,
  PeerInfo,
  PeerJoinedEvent,
  PeerLeftEvent,
  PeerUpdatedEvent,
  ReconnectHint,
  ReconnectPolicy,
  RoomState,
  RTCIceServerLike,
  ServerEvent,
  SignalEvent,
  StateEvent,
  StorageLike,
  WebSocketConstructor,
  WebSocketLike,
} from './types.js';

/** Default time a request waits for its reply, queueing included. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
/** Default time one connection attempt may take from opening the socket to `joined`. */
export const DEFAULT_JOIN_TIMEOUT_MS = 10_000;
/** Default quiet time after which the client sends its own `ping`. */
export const DEFAULT_PING_INTERVAL_MS = 20_000;
/** Default time the server has to answer that ping before the socket counts as dead. */
export const DEFAULT_PONG_TIMEOUT_MS = 10_000;
/** Backoff of the default policy: first delay bound and cap. */
export const DEFAULT_BACKOFF_BASE_MS = 500;
export const DEFAULT_BACKOFF_CAP_MS = 15_000;

export interface ClientOptions {
  /**
   * Where to connect (`ws://host:8080/ws`): one URL, a list tried in turn
   * (the next one after every lost connection or failed attempt), or a
   * function of the attempt count returning the next URL.
   */
  url: string | string[] | ((attempt: number) => string | Promise<string>);
  /** Room to join. */
  room: string;
  /** Peer id to ask for; the server assigns one when absent (with auth, the token's `sub` is used). */
  peer?: string;
  role?: string;
  metadata?: Record<string, unknown>;
  /**
   * Called before every connection attempt, so an expiring token can be
   * refreshed; sent as `?token=`. Throwing or returning null ends the client
   * (`disconnected` with code UNAUTHORIZED).
   */
  getToken?: () => string | null | undefined | Promise<string | null | undefined>;
  /** WebSocket implementation; defaults to the global one (browsers, Node ≥ 22). */
  WebSocket?: WebSocketConstructor;
  /** Default timeout of every request, queueing included. */
  requestTimeoutMs?: number;
  /** Longest time from opening a socket to `joined` before the attempt is abandoned. */
  joinTimeoutMs?: number;
  /** Quiet time after which the client pings the server. */
  pingIntervalMs?: number;
  /** Time the server has to answer before the socket counts as dead. */
  pongTimeoutMs?: number;
  /** Delay before each reconnect attempt; defaults to {@link backoff}(). */
  reconnect?: ReconnectPolicy;
  /**
   * Longest time the client keeps trying to (re)connect, from the moment the
   * connection was lost (or connect() was called); then it ends with
   * `disconnected` code DEADLINE. Unset: no deadline.
   */
  deadlineMs?: number;
  /**
   * Where the session token and last seq are kept so that a page reload
   * resumes the same peer; defaults to `sessionStorage` where there is one.
   * null turns it off.
   */
  storage?: StorageLike | null;
}

/** Every event the client emits, with the value its listeners get. */
export interface ClientEvents {
  /** Each change of {@link Client.connectionState}. */
  connection: ConnectionState;
  /** Each successful join or resume. */
  joined: Joined;
  /** Terminal: the client will not reconnect. */
  disconnected: Disconnected;
  /** The connection was lost; the client is about to reconnect. */
  lost: LostReason;
  peer_joined: PeerJoinedEvent;
  peer_left: PeerLeftEvent;
  peer_updated: PeerUpdatedEvent;
  signal: SignalEvent;
  broadcast: BroadcastEvent;
  state: StateEvent;
  server: ServerEvent;
  /** A draining node asked to reconnect; the client does so by itself. */
  reconnect: ReconnectHint;
  /** An `error` from the server that answers no request of this client. */
  error: SwitchboardError;
}

export interface RequestOptions {
  /** Overrides the client's requestTimeoutMs for this request. */
  timeoutMs?: number;
}

/**
 * The default reconnect policy: exponential backoff with full jitter — a
 * random delay between 0 and min(cap, base·2^(attempt-1)) — so that the
 * clients of a dead node do not all come back at once. After a 1008 close
 * (rate limit or slow consumer) it waits at least 4·base first.
 */
export function backoff(baseMs = DEFAULT_BACKOFF_BASE_MS, capMs = DEFAULT_BACKOFF_CAP_MS): ReconnectPolicy {
  return ({ attempt, code }) => {
    const base = code === 1008 ? baseMs * 4 : baseMs;
    return (code === 1008 ? base : 0) + Math.random() * Math.min(capMs, base * 2 ** Math.min(attempt - 1, 20));
  };
}

interface Pending {
  id: number;
  msg: Record<string, unknown>;
  resolve: (reply: any) => void;
  reject: (err: SwitchboardError) => void;
  timer: ReturnType<typeof setTimeout>;
  /** Generation of the socket it went out on; 0 while queued. */
  gen: number;
}

interface Saved {
  peer: string;
  session: string;
  lastSeq?: number;
}

// Replies that settle a request by id.
const REPLIES = ['joined', 'peers', 'ok', 'pong', 'error'];
// Join errors after which trying again cannot help.
const JOIN_FATAL = ['UNAUTHORIZED', 'FORBIDDEN', 'BAD_REQUEST', 'ROOM_FULL', 'UNKNOWN_TYPE', 'PAYLOAD_TOO_LARGE'];

const now = () => Date.now();

function defaultStorage(): StorageLike | null {
  try {
    return (globalThis as any).sessionStorage ?? null;
  } catch {
    return null; // access denied (sandboxed frame, storage disabled)
  }
}

export class Client extends Emitter<ClientEvents> {
  /** Where the connection is: idle → connecting → joined ⇄ reconnecting → disconnected. */
  connectionState: ConnectionState = 'idle';
  /** This client's peer id, once joined. */
  peer?: string;
  /** Everyone else in the room, kept up to date from `joined` and the presence events. */
  readonly peers = new Map<string, PeerInfo>();
  /** The room's state as of the last `joined` or `state` event. */
  roomState: RoomState = { version: 0, data: {} };
  /** ICE servers of the last `joined`. */
  iceServers: RTCIceServerLike[] = [];
  /** The `recovered` flag of the last `joined` (see {@link Joined.recovered}). */
  recovered = true;
  /** The highest `seq` processed: sent as `last_seq` when resuming. */
  lastSeq?: number;

  private readonly o: ClientOptions;
  private readonly storage: StorageLike | null;
  private readonly key: string;
  private readonly policy: ReconnectPolicy;
  private session?: string;
  private ws?: WebSocketLike;
  /** Bumped whenever a socket is given up, so its late callbacks are ignored. */
  private gen = 0;
  private nextId = 1;
  private joinId = 0;
  /** Sent and waiting for their reply. */
  private readonly pending = new Map<number, Pending>();
  /** Waiting for the client to be joined. */
  private queue: Pending[] = [];
  private attempt = 0;
  /** Connection attempts so far: picks the URL, so each lost connection moves on to the next one. */
  private tries = 0;
  private outageStart = 0;
  private hintMs?: number;
  private authRetried = false;
  private everJoined = false;
  private lastRx = 0;
  private pingAt = 0;
  private timers: { [name: string]: ReturnType<typeof setTimeout> | undefined } = {};
  private url = '';
  private ready?: Promise<Joined>;
  private settleReady?: [(j: Joined) => void, (e: SwitchboardError) => void];
  private readonly onOnline = () => this.retryNow();
  private readonly onOffline = () => this.probe();
  private readonly onPageHide = () => this.save();

  constructor(options: ClientOptions) {
    super();
    this.o = options;
    this.policy = options.reconnect ?? backoff();
    this.storage = options.storage === undefined ? defaultStorage() : options.storage;
    this.key = `switchboard:${options.room}`;
    const saved = this.load();
    if (saved && (!options.peer || saved.peer === options.peer)) {
      this.peer = saved.peer;
      this.session = saved.session;
      this.lastSeq = saved.lastSeq;
    }
  }

  /**
   * Connects and joins (or resumes a session kept in storage). Resolves with
   * the first `joined`; rejects when the client ends before it. Calling it
   * again returns the same promise.
   */
  connect(): Promise<Joined> {
    if (this.ready) return this.ready;
    this.ready = new Promise((resolve, reject) => (this.settleReady = [resolve, reject]));
    this.ready.catch(() => {}); // handled by whoever awaits it; never an unhandled rejection
    const g = globalThis as any;
    g.addEventListener?.('online', this.onOnline);
    g.addEventListener?.('offline', this.onOffline);
    g.addEventListener?.('pagehide', this.onPageHide);
    this.outageStart = now();
    this.move('connecting');
    this.armDeadline();
    void this.open();
    return this.ready;
  }

  /** Sends `payload` to one peer of the room. Resolves once the server accepted it for delivery. */
  signal(to: string, payload: unknown, opts?: RequestOptions): Promise<void> {
    return this.request({ type: 'signal', to, payload }, opts).then(() => {});
  }

  /** Sends `payload` to every other peer of the room. */
  broadcast(payload: unknown, opts?: RequestOptions): Promise<void> {
    return this.request({ type: 'broadcast', payload }, opts).then(() => {});
  }

  /** Lists the other peers of the room that match `filters` (all of them without). */
  discover(filters?: DiscoverFilters, opts?: RequestOptions): Promise<PeerInfo[]> {
    return this.request({ type: 'discover', filters }, opts).then((m) => m.peers);
  }

  /**
   * Applies `patch` (JSON Merge Patch) to the room state; with `ifVersion`
   * only if the state is still at that version (else VERSION_CONFLICT with
   * the current `version`). Resolves with the new version.
   */
  setState(patch: Record<string, unknown>, opts?: RequestOptions & { ifVersion?: number }): Promise<number> {
    return this.request({ type: 'set_state', patch, if_version: opts?.ifVersion }, opts).then((m) => m.version);
  }

  /** Replaces this peer's role and/or metadata; the others get `peer_updated`. */
  update(fields: { role?: string; metadata?: Record<string, unknown> }, opts?: RequestOptions): Promise<void> {
    return this.request({ type: 'update', ...fields }, opts).then(() => {
      // A later fresh join (session lost) should not bring back the old values.
      if (fields.role !== undefined) this.o.role = fields.role;
      if (fields.metadata !== undefined) this.o.metadata = fields.metadata;
    });
  }

  /**
   * Leaves the room (the others get `peer_left{reason:"left"}`) and ends the
   * client. Waits for a reconnect in progress, bounded by the timeout; the
   * client ends either way.
   */
  leave(opts?: RequestOptions): Promise<void> {
    const done = this.request({ type: 'leave' }, opts);
    const end = () => {
      this.forget();
      this.end('LEFT', 'left the room');
    };
    return done.then(end, (e) => {
      end();
      throw e;
    });
  }

  /**
   * Ends the client without leaving: the peer stays in the room for the
   * resume window and the session stays in storage, so a new client (a
   * reloaded page) can resume it.
   */
  close(): void {
    this.save();
    this.end('CLOSED', 'closed by the app');
  }

  // ---- requests ------------------------------------------------------------

  private request(msg: Record<string, unknown>, opts?: RequestOptions): Promise<any> {
    if (this.connectionState === 'disconnected') {
      return Promise.reject(new SwitchboardError('CLOSED', 'the client is disconnected; create a new one to join again'));
    }
    return new Promise((resolve, reject) => {
      const p: Pending = { id: this.nextId++, msg, resolve, reject, gen: 0, timer: undefined as any };
      p.timer = setTimeout(() => {
        this.queue = this.queue.filter((q) => q !== p);
        this.pending.delete(p.id);
        reject(
          new SwitchboardError(
            'TIMEOUT',
            p.gen
              ? `no reply to ${msg.type} within the timeout; it may or may not have been applied`
              : `${msg.type} was not sent: the client did not get (back) into the room within the timeout`,
          ),
        );
      }, opts?.timeoutMs ?? this.o.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS);
      if (this.connectionState === 'joined') this.transmit(p);
      else this.queue.push(p);
    });
  }

  private transmit(p: Pending) {
    p.gen = this.gen;
    this.pending.set(p.id, p);
    this.send({ ...p.msg, id: p.id });
  }

  private send(msg: Record<string, unknown>) {
    try {
      this.ws?.send(JSON.stringify(msg));
    } catch {
      // The socket is closing: its close event settles what was sent on it.
    }
  }

  // ---- connecting ----------------------------------------------------------

  private async open() {
    const gen = ++this.gen;
    const o = this.o;
    let url: string;
    let token: string | null | undefined;
    try {
      const u = o.url;
      url = typeof u === 'function' ? await u(this.tries) : Array.isArray(u) ? u[this.tries % u.length] : u;
      if (o.getToken) {
        token = await o.getToken();
        if (token == null) throw new Error('it returned no token');
      }
    } catch (e) {
      if (gen === this.gen) this.end('UNAUTHORIZED', `getToken failed: ${(e as Error)?.message ?? e}`);
      return;
    }
    if (gen !== this.gen) return; // ended or superseded meanwhile
    this.url = url;
    const full = token ? `${url}${url.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}` : url;
    const WS = o.WebSocket ?? ((globalThis as any).WebSocket as WebSocketConstructor | undefined);
    if (!WS) {
      this.end('CLOSED', 'no WebSocket implementation: pass one as the WebSocket option');
      return;
    }
    let ws: WebSocketLike;
    try {
      ws = new WS(full);
    } catch (e) {
      this.lost({ code: 'CONNECT_FAILED', reason: String((e as Error)?.message ?? e) });
      return;
    }
    this.ws = ws;
    let opened = false;
    let error = '';
    this.timer('join', o.joinTimeoutMs ?? DEFAULT_JOIN_TIMEOUT_MS, () =>
      this.lost({ code: 'TIMEOUT', reason: 'no joined within the join timeout' }),
    );
    ws.onopen = () => {
      if (gen !== this.gen) return;
      opened = true;
      this.lastRx = now();
      this.joinId = this.nextId++;
      this.send({
        type: 'join',
        id: this.joinId,
        room: o.room,
        peer: this.session ? undefined : (this.peer ?? o.peer),
        role: o.role,
        metadata: o.metadata,
        resume: this.session,
        last_seq: this.session ? this.lastSeq : undefined,
      });
    };
    ws.onmessage = (ev) => {
      if (gen === this.gen) this.receive(ev.data);
    };
    ws.onerror = (ev) => {
      error = ev?.message ?? ev?.error?.message ?? '';
    };
    ws.onclose = (ev) => {
      if (gen === this.gen) this.closed(ev.code, ev.reason || error || 'connection closed', opened, error);
    };
  }

  private closed(code: number, reason: string, opened: boolean, error: string) {
    if (code === 4000 || code === 4003) {
      // 4000: this session lives on another connection now; 4003: removed by
      // the application. Either way, coming back is not this client's call.
      if (code === 4003) this.forget();
      this.end(code, reason);
    } else if (code === 4001) {
      this.forget(); // the cluster lost this peer: join afresh, no resume
      this.lost({ code, reason });
    } else if (!opened && /\b401\b/.test(error)) {
      // A refused token (visible where the WebSocket reports the HTTP status,
      // as Node's `ws` does). One more try with a freshly fetched token, then stop.
      if (this.authRetried) this.end('UNAUTHORIZED', `the server refused the token: ${error}`);
      else {
        this.authRetried = true;
        this.lost({ code: 'UNAUTHORIZED', reason: error }, 0);
      }
    } else this.lost({ code, reason });
  }

  /** Gives up the current socket and schedules the next attempt. */
  private lost(why: LostReason, delay?: number | null) {
    if (this.connectionState === 'disconnected') return;
    this.drop();
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new SwitchboardError('CONNECTION_LOST', `the connection closed before the reply to ${p.msg.type}; it may or may not have been applied`));
    }
    this.pending.clear();
    if (this.connectionState === 'joined') {
      this.outageStart = now();
      this.attempt = 0;
      this.move('reconnecting');
      this.armDeadline();
    }
    this.emit('lost', why);
    this.attempt++;
    this.tries++;
    if (delay === undefined) {
      const hint = this.hintMs;
      delay =
        hint !== undefined
          ? Math.random() * hint
          : this.policy({ ...why, attempt: this.attempt, elapsedMs: now() - this.outageStart });
    }
    this.hintMs = undefined;
    if (delay == null) this.end('GAVE_UP', `the reconnect policy gave up after ${why.code}: ${why.reason}`);
    else this.timer('retry', delay, () => void this.open());
  }

  /** Forgets the socket: no callback of it counts any more. */
  private drop() {
    this.gen++;
    const ws = this.ws;
    this.ws = undefined;
    for (const t of ['join', 'ping', 'retry']) this.timer(t);
    if (ws) {
      // No-ops rather than null: some implementations (Node's `ws`) throw an
      // error event that has no listener, e.g. when closed while connecting.
      ws.onopen = ws.onmessage = ws.onerror = ws.onclose = () => {};
      try {
        ws.close(1000);
      } catch {
        // already closed
      }
    }
  }

  private armDeadline() {
    const d = this.o.deadlineMs;
    if (d !== undefined) this.timer('deadline', d, () => this.end('DEADLINE', `not back in the room within ${d} ms`));
  }

  private retryNow() {
    if (this.timers.retry) {
      this.timer('retry');
      void this.open();
    }
  }

  // ---- receiving -----------------------------------------------------------

  private receive(data: unknown) {
    this.lastRx = now();
    this.pingAt = 0;
    let m: any;
    try {
      m = JSON.parse(String(data));
    } catch {
      return;
    }
    if (!m || typeof m !== 'object') return;
    const t = m.type;
    if (m.id !== undefined && m.id === this.joinId && (t === 'joined' || t === 'error')) {
      if (t === 'joined') this.joined(m);
      else this.joinFailed(m);
      return;
    }
    if (m.id !== undefined && REPLIES.includes(t)) {
      const p = this.pending.get(m.id);
      if (p) {
        this.pending.delete(m.id);
        clearTimeout(p.timer);
        if (t === 'error') p.reject(new SwitchboardError(m.code, m.message, m.version));
        else p.resolve(m);
      }
      return;
    }
    if (t === 'reconnect') {
      this.hintMs = Math.max(0, +m.after_ms || 0);
      this.emit('reconnect', m);
      return;
    }
    if (t === 'error') {
      this.emit('error', new SwitchboardError(m.code, m.message, m.version));
      return;
    }
    if (typeof m.seq !== 'number') return; // pong of our ping, or something this version does not know
    if (this.lastSeq !== undefined && m.seq <= this.lastSeq) return; // already processed before a resume
    this.lastSeq = m.seq;
    if (t === 'peer_joined' || t === 'peer_updated') this.peers.set(m.peer.peer, m.peer);
    else if (t === 'peer_left') this.peers.delete(m.peer);
    else if (t === 'state') this.roomState = { version: m.version, data: m.data };
    this.save();
    this.emit(t, m);
  }

  private joined(m: any) {
    const resumed = !!this.session && m.recovered === true;
    // A fresh join starts a new peer whose events count from seq 1: nothing
    // processed yet is last_seq 0, so a socket lost before the first event
    // still gets that event replayed. A resume that could not replay may be
    // a fresh peer or a continued count: the next event sets the baseline.
    if (!this.session) this.lastSeq = 0;
    else if (!resumed) this.lastSeq = undefined;
    this.recovered = this.everJoined ? resumed : !this.session || resumed;
    this.everJoined = true;
    this.authRetried = false;
    this.peer = m.peer;
    this.session = m.session;
    this.peers.clear();
    for (const p of m.peers) this.peers.set(p.peer, p);
    this.roomState = m.state;
    this.iceServers = m.ice_servers ?? [];
    this.attempt = 0;
    this.timer('join');
    this.timer('deadline');
    this.save();
    this.move('joined');
    const info: Joined = {
      room: m.room,
      peer: m.peer,
      peers: m.peers,
      state: m.state,
      iceServers: this.iceServers,
      resumed,
      recovered: this.recovered,
      url: this.url,
    };
    this.settleReady?.[0](info);
    this.emit('joined', info);
    const queued = this.queue;
    this.queue = [];
    for (const p of queued) if (this.connectionState === 'joined') this.transmit(p);
    this.armPing();
  }

  private joinFailed(m: any) {
    const code = m.code as string;
    // A taken id right after a lost session is most likely our own old peer,
    // not yet removed: it goes away by itself, so keep trying.
    if (JOIN_FATAL.includes(code) || (code === 'PEER_ID_TAKEN' && !this.everJoined)) {
      if (code === 'UNAUTHORIZED' || code === 'FORBIDDEN') this.forget();
      this.end(code, m.message);
    } else this.lost({ code, reason: m.message });
  }

  // ---- liveness ------------------------------------------------------------

  /** Pings when the socket has been quiet, and gives it up when the ping goes unanswered. */
  private armPing() {
    const interval = this.o.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS;
    const wait = this.o.pongTimeoutMs ?? DEFAULT_PONG_TIMEOUT_MS;
    const t = now();
    if (this.pingAt && t - this.pingAt >= wait) {
      this.lost({ code: 'PING_TIMEOUT', reason: `no answer to a ping within ${wait} ms` });
      return;
    }
    if (!this.pingAt && t - this.lastRx >= interval) {
      this.pingAt = t;
      this.send({ type: 'ping', id: this.nextId++ });
    }
    const next = this.pingAt ? this.pingAt + wait : this.lastRx + interval;
    this.timer('ping', Math.max(next - t, 10), () => this.armPing());
  }

  /** The browser says the network went away: find out now whether the socket still works. */
  private probe() {
    if (this.connectionState !== 'joined' || this.pingAt) return;
    this.pingAt = now();
    this.send({ type: 'ping', id: this.nextId++ });
    this.armPing();
  }

  // ---- state, storage, events ------------------------------------------------

  private end(code: number | string, reason: string) {
    if (this.connectionState === 'disconnected') return;
    this.drop();
    for (const t of Object.keys(this.timers)) this.timer(t);
    const err = new SwitchboardError('CLOSED', `the client ended (${code}: ${reason})`);
    for (const p of [...this.queue, ...this.pending.values()]) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.queue = [];
    this.pending.clear();
    const g = globalThis as any;
    g.removeEventListener?.('online', this.onOnline);
    g.removeEventListener?.('offline', this.onOffline);
    g.removeEventListener?.('pagehide', this.onPageHide);
    this.move('disconnected');
    this.settleReady?.[1](new SwitchboardError(typeof code === 'string' ? code : 'CLOSED', `${code}: ${reason}`));
    this.emit('disconnected', { code, reason });
  }

  private move(s: ConnectionState) {
    if (this.connectionState === s) return;
    this.connectionState = s;
    this.emit('connection', s);
  }

  private timer(name: string, ms?: number, fn?: () => void) {
    clearTimeout(this.timers[name]);
    this.timers[name] = fn
      ? setTimeout(() => {
          this.timers[name] = undefined;
          fn();
        }, ms)
      : undefined;
  }

  private load(): Saved | undefined {
    try {
      const s = JSON.parse(this.storage?.getItem(this.key) ?? 'null');
      return typeof s?.session === 'string' && typeof s.peer === 'string' ? s : undefined;
    } catch {
      return undefined;
    }
  }

  private save() {
    if (!this.session || !this.peer) return;
    try {
      this.storage?.setItem(this.key, JSON.stringify({ peer: this.peer, session: this.session, lastSeq: this.lastSeq }));
    } catch {
      // storage full or denied: resuming after a reload is a convenience
    }
  }

  /** Drops the session: the next join is a fresh one. */
  private forget() {
    this.session = undefined;
    this.lastSeq = undefined;
    try {
      this.storage?.removeItem(this.key);
    } catch {
      // see save()
    }
  }
}
