/**
 * WebRTC mesh on top of a {@link Client}: one RTCPeerConnection per remote
 * peer, negotiated over `signal` with the "perfect negotiation" pattern, so
 * the app only supplies its media and data and receives the others'.
 *
 * What it takes care of:
 * - Who offers: a peer that joins connects to everyone already in the room;
 *   the others answer. When both offer at once (glare), the polite side (the
 *   lower peer id) rolls back and takes the other's offer.
 * - ICE candidates that arrive before the remote description are queued.
 * - ICE restart when a connection fails (or stays disconnected).
 * - `ice_servers` from `joined` (fresh TURN credentials on every join).
 * - Connection generations: each RTCPeerConnection has a random id sent
 *   with its signals, so a peer that reloaded or rebuilt its connection is
 *   recognised and the stale side is rebuilt too, and signals meant for a
 *   connection that is gone are dropped.
 * - After a resume that replayed everything, connections go on untouched;
 *   when events may have been lost (recovered: false) they are rebuilt.
 *
 * Signals it sends are `{"sbrtc":{g, to?, sdp?|ice?}}`; other signal payloads
 * are left to the app.
 */

import type { Client } from './client.js';
import { Emitter } from './emitter.js';
import type { Joined } from './types.js';

/** How long a connection may stay `disconnected` before an ICE restart. */
export const DISCONNECTED_RESTART_MS = 4000;

export interface MeshOptions {
  /** Media sent to every peer (camera, screen, a canvas stream). */
  stream?: MediaStream;
  /**
   * Label of a data channel opened to every peer (negotiated, id 0, ordered);
   * false for none. Default `data`.
   */
  dataChannel?: string | false;
  /** Extra RTCPeerConnection configuration; `iceServers` from `joined` win. */
  config?: RTCConfiguration;
  /** Peers to connect to (default: every peer of the room). */
  accept?: (peer: string) => boolean;
  /** RTCPeerConnection implementation (default: the global one). */
  RTCPeerConnection?: typeof RTCPeerConnection;
}

export interface MeshEvents {
  /** A connection to `peer` was created: add more tracks or channels here. */
  connection: { peer: string; pc: RTCPeerConnection };
  /** A remote stream of `peer`, once per stream. */
  stream: { peer: string; stream: MediaStream };
  track: { peer: string; track: MediaStreamTrack; streams: readonly MediaStream[] };
  /** The data channel to `peer` is open. */
  open: { peer: string; channel: RTCDataChannel };
  /** A message on the data channel from `peer`. */
  message: { peer: string; data: unknown };
  /** Each change of the connection state of `peer`. */
  state: { peer: string; state: RTCPeerConnectionState };
  /** The connection to `peer` was closed (the peer left, or it is being rebuilt). */
  closed: { peer: string };
}

interface Wire {
  /** Generation of the sender's connection. */
  g: string;
  /** Generation of the receiver's connection the sender talks to, once known. */
  to?: string;
  sdp?: RTCSessionDescriptionInit;
  ice?: RTCIceCandidateInit;
}

interface Link {
  pc: RTCPeerConnection;
  gen: string;
  remoteGen?: string;
  polite: boolean;
  makingOffer: boolean;
  ignoreOffer: boolean;
  queued: RTCIceCandidateInit[];
  channel?: RTCDataChannel;
  /** Signals of this link are handled one after the other. */
  chain: Promise<void>;
  streams: Set<string>;
  restart?: ReturnType<typeof setTimeout>;
}

const randomId = () => Math.random().toString(36).slice(2, 10);

export class Mesh extends Emitter<MeshEvents> {
  /** The connection to each remote peer. */
  readonly links = new Map<string, Link>();
  private readonly unsubscribe: Array<() => void>;
  private stream?: MediaStream;
  private closed = false;

  constructor(
    readonly client: Client,
    private readonly opts: MeshOptions = {},
  ) {
    super();
    this.stream = opts.stream;
    this.unsubscribe = [
      client.on('joined', (j) => this.joined(j)),
      client.on('signal', (m) => this.receive(m.from, m.payload)),
      client.on('peer_left', (m) => this.drop(m.peer)),
      client.on('disconnected', () => this.close()),
    ];
    // A client joined before the mesh existed: connect to whoever is there.
    if (client.connectionState === 'joined') for (const p of client.peers.keys()) this.connect(p);
  }

  /** Sends `data` on the data channel to every peer whose channel is open; returns how many. */
  send(data: string): number {
    let n = 0;
    for (const peer of this.links.keys()) if (this.sendTo(peer, data)) n++;
    return n;
  }

  /** Sends `data` to one peer; false when its channel is not open. */
  sendTo(peer: string, data: string): boolean {
    const ch = this.links.get(peer)?.channel;
    if (ch?.readyState !== 'open') return false;
    ch.send(data);
    return true;
  }

  /** Closes every connection and stops listening to the client. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const f of this.unsubscribe) f();
    for (const peer of [...this.links.keys()]) this.drop(peer);
  }

  private joined(j: Joined) {
    if (!j.recovered) for (const peer of [...this.links.keys()]) this.drop(peer);
    for (const link of this.links.values()) {
      try {
        link.pc.setConfiguration({ ...link.pc.getConfiguration(), iceServers: j.iceServers as RTCIceServer[] });
      } catch {
        // an implementation that refuses a change: the old servers still work
      }
    }
    for (const p of j.peers) if (!this.links.has(p.peer)) this.connect(p.peer);
  }

  /** Creates the connection to `peer` (adding the tracks and the channel starts the offer). */
  private connect(peer: string): Link | undefined {
    if (this.closed || (this.opts.accept && !this.opts.accept(peer))) return undefined;
    const PC = this.opts.RTCPeerConnection ?? RTCPeerConnection;
    const pc = new PC({ ...this.opts.config, iceServers: this.client.iceServers as RTCIceServer[] });
    const link: Link = {
      pc,
      gen: randomId(),
      polite: (this.client.peer ?? '') < peer,
      makingOffer: false,
      ignoreOffer: false,
      queued: [],
      chain: Promise.resolve(),
      streams: new Set(),
    };
    this.links.set(peer, link);
    const mine = () => this.links.get(peer) === link;

    pc.onnegotiationneeded = async () => {
      try {
        link.makingOffer = true;
        await pc.setLocalDescription();
        if (mine()) this.post(peer, link, { sdp: pc.localDescription!.toJSON() });
      } catch {
        // superseded by a remote offer (glare) or closed meanwhile
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
      if (s === 'failed') pc.restartIce();
      else if (s === 'disconnected') link.restart = setTimeout(() => mine() && pc.connectionState === 'disconnected' && pc.restartIce(), DISCONNECTED_RESTART_MS);
      this.emit('state', { peer, state: s });
    };
    pc.ontrack = (e) => {
      if (!mine()) return;
      this.emit('track', { peer, track: e.track, streams: e.streams });
      for (const stream of e.streams) {
        if (link.streams.has(stream.id)) continue;
        link.streams.add(stream.id);
        this.emit('stream', { peer, stream });
      }
    };
    if (this.opts.dataChannel !== false) {
      const ch = pc.createDataChannel(this.opts.dataChannel ?? 'data', { negotiated: true, id: 0 });
      link.channel = ch;
      ch.onopen = () => mine() && this.emit('open', { peer, channel: ch });
      ch.onmessage = (e) => mine() && this.emit('message', { peer, data: e.data });
    }
    this.emit('connection', { peer, pc });
    if (this.stream) for (const t of this.stream.getTracks()) pc.addTrack(t, this.stream);
    return link;
  }

  private drop(peer: string) {
    const link = this.links.get(peer);
    if (!link) return;
    this.links.delete(peer);
    clearTimeout(link.restart);
    link.pc.close();
    this.emit('closed', { peer });
  }

  private post(peer: string, link: Link, body: Omit<Wire, 'g'>) {
    const wire: Wire = { g: link.gen, to: link.remoteGen, ...body };
    this.client.signal(peer, { sbrtc: wire }).catch((e) => {
      // A description lost with the socket would leave negotiation hanging:
      // send it once more (a repeated description is harmless). Candidates
      // lost that way are covered by the ICE restart on failure.
      if (e?.retryable && body.sdp && this.links.get(peer) === link) {
        this.client.signal(peer, { sbrtc: wire }).catch(() => {});
      }
    });
  }

  private receive(from: string, payload: unknown) {
    const w = (payload as { sbrtc?: Wire } | null)?.sbrtc;
    if (!w || typeof w.g !== 'string' || this.closed) return;
    let link = this.links.get(from);
    // Meant for a connection of ours that no longer exists.
    if (w.to && w.to !== link?.gen) return;
    // The other side rebuilt its connection (reload, rebuild): rebuild ours.
    if (link?.remoteGen && link.remoteGen !== w.g) {
      this.drop(from);
      link = undefined;
    }
    link ??= this.connect(from);
    if (!link) return;
    link.remoteGen ??= w.g;
    const l = link;
    l.chain = l.chain.then(() => this.handle(l, from, w)).catch(() => {
      // a failed step of one negotiation; the ICE restart on failure recovers
    });
  }

  private async handle(link: Link, peer: string, w: Wire) {
    const pc = link.pc;
    if (w.sdp) {
      const offer = w.sdp.type === 'offer';
      const collision = offer && (link.makingOffer || pc.signalingState !== 'stable');
      link.ignoreOffer = !link.polite && collision;
      if (link.ignoreOffer) return;
      await pc.setRemoteDescription(w.sdp); // rolls back our own offer first when polite
      for (const c of link.queued.splice(0)) await pc.addIceCandidate(c).catch(() => {});
      if (offer) {
        await pc.setLocalDescription();
        this.post(peer, link, { sdp: pc.localDescription!.toJSON() });
      }
    } else if (w.ice) {
      if (!pc.remoteDescription) link.queued.push(w.ice);
      else
        await pc.addIceCandidate(w.ice).catch((e) => {
          if (!link.ignoreOffer) throw e;
        });
    }
  }
}
