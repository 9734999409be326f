// Generated from clients/js/demo/app.ts by clients/js/scripts/build.mjs (npm run build).
// Do not edit: the check script fails when this file and its sources disagree.

// src/emitter.ts
var Emitter = class {
  constructor() {
    this.listeners = {};
  }
  /** Subscribes to an event; returns the function that unsubscribes. */
  on(type, fn) {
    var _a;
    ((_a = this.listeners)[type] ?? (_a[type] = /* @__PURE__ */ new Set())).add(fn);
    return () => this.off(type, fn);
  }
  off(type, fn) {
    this.listeners[type]?.delete(fn);
  }
  emit(type, ev) {
    for (const fn of [...this.listeners[type] ?? []]) {
      try {
        fn(ev);
      } catch (err) {
        const g = globalThis;
        if (typeof g.reportError === "function") g.reportError(err);
        else
          setTimeout(() => {
            throw err;
          });
      }
    }
  }
};

// src/errors.ts
var RETRYABLE = ["RATE_LIMITED", "UNAVAILABLE", "TIMEOUT", "CONNECTION_LOST"];
var SwitchboardError = class extends Error {
  constructor(code, message, version) {
    super(message);
    this.code = code;
    this.version = version;
    this.name = "SwitchboardError";
    this.retryable = RETRYABLE.includes(code);
  }
};

// src/client.ts
var DEFAULT_REQUEST_TIMEOUT_MS = 1e4;
var DEFAULT_JOIN_TIMEOUT_MS = 1e4;
var DEFAULT_PING_INTERVAL_MS = 2e4;
var DEFAULT_PONG_TIMEOUT_MS = 1e4;
var DEFAULT_BACKOFF_BASE_MS = 500;
var DEFAULT_BACKOFF_CAP_MS = 15e3;
function backoff(baseMs = DEFAULT_BACKOFF_BASE_MS, capMs = DEFAULT_BACKOFF_CAP_MS) {
  return ({ attempt, code }) => {
    const base = code === 1008 ? baseMs * 4 : baseMs;
    return (code === 1008 ? base : 0) + Math.random() * Math.min(capMs, base * 2 ** Math.min(attempt - 1, 20));
  };
}
var REPLIES = ["joined", "peers", "ok", "pong", "error"];
var JOIN_FATAL = ["UNAUTHORIZED", "FORBIDDEN", "BAD_REQUEST", "ROOM_FULL", "UNKNOWN_TYPE", "PAYLOAD_TOO_LARGE"];
var now = () => Date.now();
function defaultStorage() {
  try {
    return globalThis.sessionStorage ?? null;
  } catch {
    return null;
  }
}
var Client = class extends Emitter {
  constructor(options) {
    super();
    /** Where the connection is: idle → connecting → joined ⇄ reconnecting → disconnected. */
    this.connectionState = "idle";
    /** Everyone else in the room, kept up to date from `joined` and the presence events. */
    this.peers = /* @__PURE__ */ new Map();
    /** The room's state as of the last `joined` or `state` event. */
    this.roomState = { version: 0, data: {} };
    /** ICE servers of the last `joined`. */
    this.iceServers = [];
    /** The `recovered` flag of the last `joined` (see {@link Joined.recovered}). */
    this.recovered = true;
    /** Bumped whenever a socket is given up, so its late callbacks are ignored. */
    this.gen = 0;
    this.nextId = 1;
    this.joinId = 0;
    /** Sent and waiting for their reply. */
    this.pending = /* @__PURE__ */ new Map();
    /** Waiting for the client to be joined. */
    this.queue = [];
    this.attempt = 0;
    /** Connection attempts so far: picks the URL, so each lost connection moves on to the next one. */
    this.tries = 0;
    this.outageStart = 0;
    this.authRetried = false;
    this.everJoined = false;
    this.lastRx = 0;
    this.pingAt = 0;
    this.timers = {};
    this.url = "";
    this.onOnline = () => this.retryNow();
    this.onOffline = () => this.probe();
    this.onPageHide = () => this.save();
    this.o = options;
    this.policy = options.reconnect ?? backoff();
    this.storage = options.storage === void 0 ? defaultStorage() : options.storage;
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
  connect() {
    if (this.ready) return this.ready;
    this.ready = new Promise((resolve, reject) => this.settleReady = [resolve, reject]);
    this.ready.catch(() => {
    });
    const g = globalThis;
    g.addEventListener?.("online", this.onOnline);
    g.addEventListener?.("offline", this.onOffline);
    g.addEventListener?.("pagehide", this.onPageHide);
    this.outageStart = now();
    this.move("connecting");
    this.armDeadline();
    void this.open();
    return this.ready;
  }
  /** Sends `payload` to one peer of the room. Resolves once the server accepted it for delivery. */
  signal(to, payload, opts) {
    return this.request({ type: "signal", to, payload }, opts).then(() => {
    });
  }
  /** Sends `payload` to every other peer of the room. */
  broadcast(payload, opts) {
    return this.request({ type: "broadcast", payload }, opts).then(() => {
    });
  }
  /** Lists the other peers of the room that match `filters` (all of them without). */
  discover(filters, opts) {
    return this.request({ type: "discover", filters }, opts).then((m) => m.peers);
  }
  /**
   * Applies `patch` (JSON Merge Patch) to the room state; with `ifVersion`
   * only if the state is still at that version (else VERSION_CONFLICT with
   * the current `version`). Resolves with the new version.
   */
  setState(patch, opts) {
    return this.request({ type: "set_state", patch, if_version: opts?.ifVersion }, opts).then((m) => m.version);
  }
  /** Replaces this peer's role and/or metadata; the others get `peer_updated`. */
  update(fields, opts) {
    return this.request({ type: "update", ...fields }, opts).then(() => {
      if (fields.role !== void 0) this.o.role = fields.role;
      if (fields.metadata !== void 0) this.o.metadata = fields.metadata;
    });
  }
  /**
   * Leaves the room (the others get `peer_left{reason:"left"}`) and ends the
   * client. Waits for a reconnect in progress, bounded by the timeout; the
   * client ends either way.
   */
  leave(opts) {
    const done = this.request({ type: "leave" }, opts);
    const end = () => {
      this.forget();
      this.end("LEFT", "left the room");
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
  close() {
    this.save();
    this.end("CLOSED", "closed by the app");
  }
  // ---- requests ------------------------------------------------------------
  request(msg, opts) {
    if (this.connectionState === "disconnected") {
      return Promise.reject(new SwitchboardError("CLOSED", "the client is disconnected; create a new one to join again"));
    }
    return new Promise((resolve, reject) => {
      const p = { id: this.nextId++, msg, resolve, reject, gen: 0, timer: void 0 };
      p.timer = setTimeout(() => {
        this.queue = this.queue.filter((q) => q !== p);
        this.pending.delete(p.id);
        reject(
          new SwitchboardError(
            "TIMEOUT",
            p.gen ? `no reply to ${msg.type} within the timeout; it may or may not have been applied` : `${msg.type} was not sent: the client did not get (back) into the room within the timeout`
          )
        );
      }, opts?.timeoutMs ?? this.o.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS);
      if (this.connectionState === "joined") this.transmit(p);
      else this.queue.push(p);
    });
  }
  transmit(p) {
    p.gen = this.gen;
    this.pending.set(p.id, p);
    this.send({ ...p.msg, id: p.id });
  }
  send(msg) {
    try {
      this.ws?.send(JSON.stringify(msg));
    } catch {
    }
  }
  // ---- connecting ----------------------------------------------------------
  async open() {
    const gen = ++this.gen;
    const o = this.o;
    let url;
    let token;
    try {
      const u = o.url;
      url = typeof u === "function" ? await u(this.tries) : Array.isArray(u) ? u[this.tries % u.length] : u;
      if (o.getToken) {
        token = await o.getToken();
        if (token == null) throw new Error("it returned no token");
      }
    } catch (e) {
      if (gen === this.gen) this.end("UNAUTHORIZED", `getToken failed: ${e?.message ?? e}`);
      return;
    }
    if (gen !== this.gen) return;
    this.url = url;
    const full = token ? `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}` : url;
    const WS = o.WebSocket ?? globalThis.WebSocket;
    if (!WS) {
      this.end("CLOSED", "no WebSocket implementation: pass one as the WebSocket option");
      return;
    }
    let ws;
    try {
      ws = new WS(full);
    } catch (e) {
      this.lost({ code: "CONNECT_FAILED", reason: String(e?.message ?? e) });
      return;
    }
    this.ws = ws;
    let opened = false;
    let error = "";
    this.timer(
      "join",
      o.joinTimeoutMs ?? DEFAULT_JOIN_TIMEOUT_MS,
      () => this.lost({ code: "TIMEOUT", reason: "no joined within the join timeout" })
    );
    ws.onopen = () => {
      if (gen !== this.gen) return;
      opened = true;
      this.lastRx = now();
      this.joinId = this.nextId++;
      this.send({
        type: "join",
        id: this.joinId,
        room: o.room,
        peer: this.session ? void 0 : this.peer ?? o.peer,
        role: o.role,
        metadata: o.metadata,
        resume: this.session,
        last_seq: this.session ? this.lastSeq : void 0
      });
    };
    ws.onmessage = (ev) => {
      if (gen === this.gen) this.receive(ev.data);
    };
    ws.onerror = (ev) => {
      error = ev?.message ?? ev?.error?.message ?? "";
    };
    ws.onclose = (ev) => {
      if (gen === this.gen) this.closed(ev.code, ev.reason || error || "connection closed", opened, error);
    };
  }
  closed(code, reason, opened, error) {
    if (code === 4e3 || code === 4003) {
      if (code === 4003) this.forget();
      this.end(code, reason);
    } else if (code === 4001) {
      this.forget();
      this.lost({ code, reason });
    } else if (!opened && /\b401\b/.test(error)) {
      if (this.authRetried) this.end("UNAUTHORIZED", `the server refused the token: ${error}`);
      else {
        this.authRetried = true;
        this.lost({ code: "UNAUTHORIZED", reason: error }, 0);
      }
    } else this.lost({ code, reason });
  }
  /** Gives up the current socket and schedules the next attempt. */
  lost(why, delay) {
    if (this.connectionState === "disconnected") return;
    this.drop();
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new SwitchboardError("CONNECTION_LOST", `the connection closed before the reply to ${p.msg.type}; it may or may not have been applied`));
    }
    this.pending.clear();
    if (this.connectionState === "joined") {
      this.outageStart = now();
      this.attempt = 0;
      this.move("reconnecting");
      this.armDeadline();
    }
    this.emit("lost", why);
    this.attempt++;
    this.tries++;
    if (delay === void 0) {
      const hint = this.hintMs;
      delay = hint !== void 0 ? Math.random() * hint : this.policy({ ...why, attempt: this.attempt, elapsedMs: now() - this.outageStart });
    }
    this.hintMs = void 0;
    if (delay == null) this.end("GAVE_UP", `the reconnect policy gave up after ${why.code}: ${why.reason}`);
    else this.timer("retry", delay, () => void this.open());
  }
  /** Forgets the socket: no callback of it counts any more. */
  drop() {
    this.gen++;
    const ws = this.ws;
    this.ws = void 0;
    for (const t of ["join", "ping", "retry"]) this.timer(t);
    if (ws) {
      ws.onopen = ws.onmessage = ws.onerror = ws.onclose = () => {
      };
      try {
        ws.close(1e3);
      } catch {
      }
    }
  }
  armDeadline() {
    const d = this.o.deadlineMs;
    if (d !== void 0) this.timer("deadline", d, () => this.end("DEADLINE", `not back in the room within ${d} ms`));
  }
  retryNow() {
    if (this.timers.retry) {
      this.timer("retry");
      void this.open();
    }
  }
  // ---- receiving -----------------------------------------------------------
  receive(data) {
    this.lastRx = now();
    this.pingAt = 0;
    let m;
    try {
      m = JSON.parse(String(data));
    } catch {
      return;
    }
    if (!m || typeof m !== "object") return;
    const t = m.type;
    if (m.id !== void 0 && m.id === this.joinId && (t === "joined" || t === "error")) {
      if (t === "joined") this.joined(m);
      else this.joinFailed(m);
      return;
    }
    if (m.id !== void 0 && REPLIES.includes(t)) {
      const p = this.pending.get(m.id);
      if (p) {
        this.pending.delete(m.id);
        clearTimeout(p.timer);
        if (t === "error") p.reject(new SwitchboardError(m.code, m.message, m.version));
        else p.resolve(m);
      }
      return;
    }
    if (t === "reconnect") {
      this.hintMs = Math.max(0, +m.after_ms || 0);
      this.emit("reconnect", m);
      return;
    }
    if (t === "error") {
      this.emit("error", new SwitchboardError(m.code, m.message, m.version));
      return;
    }
    if (typeof m.seq !== "number") return;
    if (this.lastSeq !== void 0 && m.seq <= this.lastSeq) return;
    this.lastSeq = m.seq;
    if (t === "peer_joined" || t === "peer_updated") this.peers.set(m.peer.peer, m.peer);
    else if (t === "peer_left") this.peers.delete(m.peer);
    else if (t === "state") this.roomState = { version: m.version, data: m.data };
    this.save();
    this.emit(t, m);
  }
  joined(m) {
    const resumed = !!this.session && m.recovered === true;
    if (!this.session) this.lastSeq = 0;
    else if (!resumed) this.lastSeq = void 0;
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
    this.timer("join");
    this.timer("deadline");
    this.save();
    this.move("joined");
    const info = {
      room: m.room,
      peer: m.peer,
      peers: m.peers,
      state: m.state,
      iceServers: this.iceServers,
      resumed,
      recovered: this.recovered,
      url: this.url
    };
    this.settleReady?.[0](info);
    this.emit("joined", info);
    const queued = this.queue;
    this.queue = [];
    for (const p of queued) if (this.connectionState === "joined") this.transmit(p);
    this.armPing();
  }
  joinFailed(m) {
    const code = m.code;
    if (JOIN_FATAL.includes(code) || code === "PEER_ID_TAKEN" && !this.everJoined) {
      if (code === "UNAUTHORIZED" || code === "FORBIDDEN") this.forget();
      this.end(code, m.message);
    } else this.lost({ code, reason: m.message });
  }
  // ---- liveness ------------------------------------------------------------
  /** Pings when the socket has been quiet, and gives it up when the ping goes unanswered. */
  armPing() {
    const interval = this.o.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS;
    const wait = this.o.pongTimeoutMs ?? DEFAULT_PONG_TIMEOUT_MS;
    const t = now();
    if (this.pingAt && t - this.pingAt >= wait) {
      this.lost({ code: "PING_TIMEOUT", reason: `no answer to a ping within ${wait} ms` });
      return;
    }
    if (!this.pingAt && t - this.lastRx >= interval) {
      this.pingAt = t;
      this.send({ type: "ping", id: this.nextId++ });
    }
    const next = this.pingAt ? this.pingAt + wait : this.lastRx + interval;
    this.timer("ping", Math.max(next - t, 10), () => this.armPing());
  }
  /** The browser says the network went away: find out now whether the socket still works. */
  probe() {
    if (this.connectionState !== "joined" || this.pingAt) return;
    this.pingAt = now();
    this.send({ type: "ping", id: this.nextId++ });
    this.armPing();
  }
  // ---- state, storage, events ------------------------------------------------
  end(code, reason) {
    if (this.connectionState === "disconnected") return;
    this.drop();
    for (const t of Object.keys(this.timers)) this.timer(t);
    const err = new SwitchboardError("CLOSED", `the client ended (${code}: ${reason})`);
    for (const p of [...this.queue, ...this.pending.values()]) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.queue = [];
    this.pending.clear();
    const g = globalThis;
    g.removeEventListener?.("online", this.onOnline);
    g.removeEventListener?.("offline", this.onOffline);
    g.removeEventListener?.("pagehide", this.onPageHide);
    this.move("disconnected");
    this.settleReady?.[1](new SwitchboardError(typeof code === "string" ? code : "CLOSED", `${code}: ${reason}`));
    this.emit("disconnected", { code, reason });
  }
  move(s) {
    if (this.connectionState === s) return;
    this.connectionState = s;
    this.emit("connection", s);
  }
  timer(name, ms, fn) {
    clearTimeout(this.timers[name]);
    this.timers[name] = fn ? setTimeout(() => {
      this.timers[name] = void 0;
      fn();
    }, ms) : void 0;
  }
  load() {
    try {
      const s = JSON.parse(this.storage?.getItem(this.key) ?? "null");
      return typeof s?.session === "string" && typeof s.peer === "string" ? s : void 0;
    } catch {
      return void 0;
    }
  }
  save() {
    if (!this.session || !this.peer) return;
    try {
      this.storage?.setItem(this.key, JSON.stringify({ peer: this.peer, session: this.session, lastSeq: this.lastSeq }));
    } catch {
    }
  }
  /** Drops the session: the next join is a fresh one. */
  forget() {
    this.session = void 0;
    this.lastSeq = void 0;
    try {
      this.storage?.removeItem(this.key);
    } catch {
    }
  }
};

// src/webrtc.ts
var DISCONNECTED_RESTART_MS = 4e3;
var randomId = () => Math.random().toString(36).slice(2, 10);
var Mesh = class extends Emitter {
  constructor(client, opts = {}) {
    super();
    this.client = client;
    this.opts = opts;
    /** The connection to each remote peer. */
    this.links = /* @__PURE__ */ new Map();
    this.closed = false;
    this.stream = opts.stream;
    this.unsubscribe = [
      client.on("joined", (j) => this.joined(j)),
      client.on("signal", (m) => this.receive(m.from, m.payload)),
      client.on("peer_left", (m) => this.drop(m.peer)),
      client.on("disconnected", () => this.close())
    ];
    if (client.connectionState === "joined") for (const p of client.peers.keys()) this.connect(p);
  }
  /** Sends `data` on the data channel to every peer whose channel is open; returns how many. */
  send(data) {
    let n = 0;
    for (const peer of this.links.keys()) if (this.sendTo(peer, data)) n++;
    return n;
  }
  /** Sends `data` to one peer; false when its channel is not open. */
  sendTo(peer, data) {
    const ch = this.links.get(peer)?.channel;
    if (ch?.readyState !== "open") return false;
    ch.send(data);
    return true;
  }
  /** Closes every connection and stops listening to the client. */
  close() {
    if (this.closed) return;
    this.closed = true;
    for (const f of this.unsubscribe) f();
    for (const peer of [...this.links.keys()]) this.drop(peer);
  }
  joined(j) {
    if (!j.recovered) for (const peer of [...this.links.keys()]) this.drop(peer);
    for (const link of this.links.values()) {
      try {
        link.pc.setConfiguration({ ...link.pc.getConfiguration(), iceServers: j.iceServers });
      } catch {
      }
    }
    for (const p of j.peers) if (!this.links.has(p.peer)) this.connect(p.peer);
  }
  /** Creates the connection to `peer` (adding the tracks and the channel starts the offer). */
  connect(peer) {
    if (this.closed || this.opts.accept && !this.opts.accept(peer)) return void 0;
    const PC = this.opts.RTCPeerConnection ?? RTCPeerConnection;
    const pc = new PC({ ...this.opts.config, iceServers: this.client.iceServers });
    const link = {
      pc,
      gen: randomId(),
      polite: (this.client.peer ?? "") < peer,
      makingOffer: false,
      ignoreOffer: false,
      queued: [],
      chain: Promise.resolve(),
      streams: /* @__PURE__ */ new Set()
    };
    this.links.set(peer, link);
    const mine = () => this.links.get(peer) === link;
    pc.onnegotiationneeded = async () => {
      try {
        link.makingOffer = true;
        await pc.setLocalDescription();
        if (mine()) this.post(peer, link, { sdp: pc.localDescription.toJSON() });
      } catch {
      } finally {
        link.makingOffer = false;
      }
    };
    pc.onicecandidate = (e) => {
      if (e.candidate && mine()) this.post(peer, link, { ice: e.candidate.toJSON() });
    };
    pc.onconnectionstatechange = () => {
      if (!mine()) return;
      const s = pc.connectionState;
      clearTimeout(link.restart);
      if (s === "failed") pc.restartIce();
      else if (s === "disconnected") link.restart = setTimeout(() => mine() && pc.connectionState === "disconnected" && pc.restartIce(), DISCONNECTED_RESTART_MS);
      this.emit("state", { peer, state: s });
    };
    pc.ontrack = (e) => {
      if (!mine()) return;
      this.emit("track", { peer, track: e.track, streams: e.streams });
      for (const stream of e.streams) {
        if (link.streams.has(stream.id)) continue;
        link.streams.add(stream.id);
        this.emit("stream", { peer, stream });
      }
    };
    if (this.opts.dataChannel !== false) {
      const ch = pc.createDataChannel(this.opts.dataChannel ?? "data", { negotiated: true, id: 0 });
      link.channel = ch;
      ch.onopen = () => mine() && this.emit("open", { peer, channel: ch });
      ch.onmessage = (e) => mine() && this.emit("message", { peer, data: e.data });
    }
    this.emit("connection", { peer, pc });
    if (this.stream) for (const t of this.stream.getTracks()) pc.addTrack(t, this.stream);
    return link;
  }
  drop(peer) {
    const link = this.links.get(peer);
    if (!link) return;
    this.links.delete(peer);
    clearTimeout(link.restart);
    link.pc.close();
    this.emit("closed", { peer });
  }
  post(peer, link, body) {
    const wire = { g: link.gen, to: link.remoteGen, ...body };
    this.client.signal(peer, { sbrtc: wire }).catch((e) => {
      if (e?.retryable && body.sdp && this.links.get(peer) === link) {
        this.client.signal(peer, { sbrtc: wire }).catch(() => {
        });
      }
    });
  }
  receive(from, payload) {
    const w = payload?.sbrtc;
    if (!w || typeof w.g !== "string" || this.closed) return;
    let link = this.links.get(from);
    if (w.to && w.to !== link?.gen) return;
    if (link?.remoteGen && link.remoteGen !== w.g) {
      this.drop(from);
      link = void 0;
    }
    link ?? (link = this.connect(from));
    if (!link) return;
    link.remoteGen ?? (link.remoteGen = w.g);
    const l = link;
    l.chain = l.chain.then(() => this.handle(l, from, w)).catch(() => {
    });
  }
  async handle(link, peer, w) {
    const pc = link.pc;
    if (w.sdp) {
      const offer = w.sdp.type === "offer";
      const collision = offer && (link.makingOffer || pc.signalingState !== "stable");
      link.ignoreOffer = !link.polite && collision;
      if (link.ignoreOffer) return;
      await pc.setRemoteDescription(w.sdp);
      for (const c of link.queued.splice(0)) await pc.addIceCandidate(c).catch(() => {
      });
      if (offer) {
        await pc.setLocalDescription();
        this.post(peer, link, { sdp: pc.localDescription.toJSON() });
      }
    } else if (w.ice) {
      if (!pc.remoteDescription) link.queued.push(w.ice);
      else
        await pc.addIceCandidate(w.ice).catch((e) => {
          if (!link.ignoreOffer) throw e;
        });
    }
  }
};

// demo/app.ts
var $ = (id) => document.getElementById(id);
var params = new URLSearchParams(location.search);
var seen = {
  chat: [],
  joins: [],
  states: [],
  open: /* @__PURE__ */ new Set(),
  streams: /* @__PURE__ */ new Set()
};
var demo = { seen };
window.demo = demo;
function wsUrls() {
  const list = (params.get("nodes") ?? "").split(",").filter(Boolean);
  return list.length ? list : [`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`];
}
function canvasStream(label) {
  const canvas = document.createElement("canvas");
  canvas.width = 320;
  canvas.height = 240;
  const g = canvas.getContext("2d");
  let hue = Math.floor(Math.random() * 360);
  setInterval(() => {
    hue = (hue + 2) % 360;
    g.fillStyle = `hsl(${hue} 60% 45%)`;
    g.fillRect(0, 0, 320, 240);
    g.fillStyle = "#fff";
    g.font = "24px system-ui, sans-serif";
    g.fillText(label, 16, 40);
    g.font = "16px system-ui, sans-serif";
    g.fillText((/* @__PURE__ */ new Date()).toLocaleTimeString(), 16, 68);
  }, 100);
  return canvas.captureStream(10);
}
async function localMedia(label) {
  if (params.get("camera") !== "0" && navigator.mediaDevices?.getUserMedia) {
    try {
      return await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 }, audio: true });
    } catch {
    }
  }
  return canvasStream(label);
}
function line(text, cls = "") {
  const log = $("log");
  const p = document.createElement("div");
  p.textContent = text;
  p.className = cls;
  log.append(p);
  log.scrollTop = log.scrollHeight;
}
function renderPeers(client, mesh) {
  const ul = $("peers");
  ul.replaceChildren();
  const me = document.createElement("li");
  me.innerHTML = '<span></span><span class="rtc">you</span>';
  me.firstElementChild.textContent = client.peer ?? "\u2026";
  ul.append(me);
  for (const p of client.peers.values()) {
    const li = document.createElement("li");
    li.dataset.peer = p.peer;
    const name = document.createElement("span");
    name.textContent = p.peer;
    const rtc = document.createElement("span");
    rtc.className = "rtc";
    rtc.textContent = (mesh.links.get(p.peer)?.pc.connectionState ?? "\u2014") + (seen.open.has(p.peer) ? " \xB7 chat" : "");
    li.append(name, rtc);
    ul.append(li);
  }
}
function renderState(client) {
  const { version, data } = client.roomState;
  $("count").textContent = String(Number(data.count ?? 0));
  $("topicnow").textContent = typeof data.topic === "string" && data.topic ? data.topic : "\u2014";
  $("version").textContent = String(version);
}
function showConnection(state, info = "") {
  const el = $("conn");
  el.dataset.state = state;
  el.textContent = state;
  $("conninfo").textContent = info;
}
async function increment(client) {
  for (let tries = 0; tries < 5; tries++) {
    const { version, data } = client.roomState;
    try {
      await client.setState({ count: Number(data.count ?? 0) + 1 }, { ifVersion: version });
      return;
    } catch (e) {
      if (!(e instanceof SwitchboardError) || e.code !== "VERSION_CONFLICT") throw e;
      client.roomState = { ...client.roomState, version: e.version ?? version };
    }
  }
}
async function join(room, name) {
  const stream = await localMedia(name || "guest");
  $("local").srcObject = stream;
  const client = new Client({ url: wsUrls(), room, peer: name || void 0, pingIntervalMs: 5e3, pongTimeoutMs: 5e3 });
  const mesh = new Mesh(client, { stream, dataChannel: "chat" });
  Object.assign(demo, { client, mesh, say: (t) => send(t) });
  const peers = () => renderPeers(client, mesh);
  client.on("connection", (s) => {
    seen.states.push(s);
    if (s !== "joined") showConnection(s, s === "reconnecting" ? "connection lost; resuming\u2026" : "");
  });
  client.on("joined", (j) => {
    seen.joins.push(j);
    const how = seen.joins.length === 1 && !j.resumed ? "joined" : j.resumed ? "resumed" : "rejoined";
    showConnection("joined", `${how} as ${j.peer} via ${new URL(j.url).host}${j.recovered ? "" : " \xB7 recovered: false (state re-read)"}`);
    $("localcap").textContent = `${j.peer} (you)`;
    peers();
    renderState(client);
    if (seen.joins.length > 1) line(j.recovered ? `${how}: nothing missed` : `${how}: some events were lost, state re-read`, "sys");
  });
  client.on("lost", (why) => line(`connection lost (${why.code}); reconnecting`, "sys"));
  client.on("disconnected", (d) => {
    showConnection("disconnected", `${d.code}: ${d.reason}`);
    for (const id of ["send", "inc", "settopic", "leave"]) $(id).disabled = true;
    $("join").disabled = false;
  });
  client.on("peer_joined", (m) => (line(`${m.peer.peer} joined`, "sys"), peers()));
  client.on("peer_left", (m) => (line(`${m.peer} left (${m.reason})`, "sys"), seen.open.delete(m.peer), peers()));
  client.on("peer_updated", peers);
  client.on("state", () => renderState(client));
  mesh.on("state", peers);
  mesh.on("open", ({ peer }) => (seen.open.add(peer), peers()));
  mesh.on("closed", ({ peer }) => {
    seen.open.delete(peer);
    document.querySelector(`figure[data-peer="${CSS.escape(peer)}"]`)?.remove();
    peers();
  });
  mesh.on("stream", ({ peer, stream: remote }) => {
    seen.streams.add(peer);
    let fig = document.querySelector(`figure[data-peer="${CSS.escape(peer)}"]`);
    if (!fig) {
      fig = document.createElement("figure");
      fig.dataset.peer = peer;
      const video = document.createElement("video");
      video.autoplay = video.playsInline = true;
      const cap = document.createElement("figcaption");
      cap.textContent = peer;
      fig.append(video, cap);
      $("videos").append(fig);
    }
    fig.querySelector("video").srcObject = remote;
  });
  mesh.on("message", ({ peer, data }) => {
    try {
      const m = JSON.parse(String(data));
      if (typeof m.text === "string") {
        seen.chat.push({ from: peer, text: m.text });
        line(`${peer}: ${m.text}`);
      }
    } catch {
    }
  });
  function send(text) {
    const n = mesh.send(JSON.stringify({ text }));
    line(`${client.peer}: ${text}${n ? "" : " (nobody connected)"}`, "me");
    return n;
  }
  $("chatform").onsubmit = (e) => {
    e.preventDefault();
    const input = $("msg");
    if (input.value.trim()) send(input.value.trim());
    input.value = "";
  };
  $("inc").onclick = () => increment(client).catch((e) => line(`counter: ${e.message}`, "sys"));
  $("topicform").onsubmit = (e) => {
    e.preventDefault();
    client.setState({ topic: $("topic").value }).catch((err) => line(`topic: ${err.message}`, "sys"));
  };
  $("leave").onclick = () => client.leave().catch(() => {
  });
  for (const id of ["send", "inc", "settopic", "leave"]) $(id).disabled = false;
  $("join").disabled = true;
  await client.connect();
}
$("room").setAttribute("value", params.get("room") ?? "lobby");
$("name").setAttribute("value", params.get("name") ?? "");
$("joinform").onsubmit = (e) => {
  e.preventDefault();
  const room = $("room").value.trim();
  const name = $("name").value.trim();
  join(room, name).catch((err) => showConnection("disconnected", String(err?.message ?? err)));
};
if (params.get("join") === "1") $("join").click();
