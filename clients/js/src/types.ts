/**
 * Wire types of the Switchboard protocol (docs/protocol.md) as the client
 * sees them: what the server sends, and the shapes the SDK hands to the app.
 * Types only: nothing here ends up in the bundle.
 */

/** A JSON value as it travels in `payload`, `metadata` and room state. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** One peer of the room, as `joined.peers`, `peer_joined` and `discover` describe it. */
export interface PeerInfo {
  peer: string;
  role: string;
  metadata: Record<string, unknown>;
  /** Unix milliseconds. */
  joined_at: number;
}

/** The room's shared state: a JSON object and its version (0 when never set). */
export interface RoomState {
  version: number;
  data: Record<string, unknown>;
}

/** `discover` filters: role, tags (any of) and property comparisons. */
export interface DiscoverFilters {
  role?: string;
  tags?: string[];
  properties?: Record<string, unknown>;
}

/** Why a peer left: see `peer_left` in the protocol. */
export type LeaveReason = 'left' | 'disconnected' | 'timeout' | 'node_lost' | 'kicked' | 'replaced';

/** Events addressed to this peer carry a per-peer `seq`, increasing by one. */
interface Sequenced {
  seq: number;
}
export interface PeerJoinedEvent extends Sequenced {
  type: 'peer_joined';
  peer: PeerInfo;
}
export interface PeerLeftEvent extends Sequenced {
  type: 'peer_left';
  peer: string;
  reason: LeaveReason;
}
export interface PeerUpdatedEvent extends Sequenced {
  type: 'peer_updated';
  peer: PeerInfo;
}
export interface SignalEvent<P = unknown> extends Sequenced {
  type: 'signal';
  from: string;
  payload: P;
}
export interface BroadcastEvent<P = unknown> extends Sequenced {
  type: 'broadcast';
  from: string;
  payload: P;
}
export interface StateEvent extends Sequenced, RoomState {
  type: 'state';
  /** The peer that changed it, or null for the Server API. */
  by: string | null;
}
export interface ServerEvent extends Sequenced {
  type: 'server';
  payload: unknown;
}
/** The node is draining: the SDK reconnects (to any node) and resumes by itself. */
export interface ReconnectHint {
  type: 'reconnect';
  reason: string;
  after_ms: number;
}

/** The outcome of one successful join or resume, emitted as `joined`. */
export interface Joined {
  room: string;
  /** This client's peer id (assigned by the server when none was asked for). */
  peer: string;
  /** Everyone else in the room, as of this join. */
  peers: PeerInfo[];
  state: RoomState;
  /** RTCIceServer objects for RTCPeerConnection (fresh TURN credentials on every join). */
  iceServers: RTCIceServerLike[];
  /** True when this join re-attached the previous session (same peer id, nobody saw it leave). */
  resumed: boolean;
  /**
   * False when events may have been missed since the previous `joined` of this
   * client (the resume window passed, the session was lost, or the server could
   * not replay everything): re-read what the app keeps from `peers` and `state`.
   * True on a client's first join.
   */
  recovered: boolean;
  /** Which URL this connection went to. */
  url: string;
}

/** Structural twin of RTCIceServer, so the core needs no DOM types. */
export interface RTCIceServerLike {
  urls: string | string[];
  username?: string;
  credential?: string;
}

/** Connection states. `disconnected` is terminal: make a new client to join again. */
export type ConnectionState = 'idle' | 'connecting' | 'joined' | 'reconnecting' | 'disconnected';

/** Why the client ended (terminal `disconnected`). */
export interface Disconnected {
  /** A WebSocket close code (4000, 4003, …), a protocol error code, or `LEFT`, `CLOSED`, `DEADLINE`, `GAVE_UP`, `UNAUTHORIZED`. */
  code: number | string;
  reason: string;
}

/** Why the connection was lost, handed to the reconnect policy. */
export interface LostReason {
  /** The close code, or `PING_TIMEOUT`, `TIMEOUT` (join took too long), `UNAVAILABLE`, … */
  code: number | string;
  reason: string;
}

/** What a reconnect policy decides from: the attempt number (1 for the first retry), the time since the connection was lost, and why. */
export interface ReconnectContext extends LostReason {
  attempt: number;
  elapsedMs: number;
}

/** Returns the delay before the next attempt in ms, or null to give up (terminal `disconnected`). */
export type ReconnectPolicy = (ctx: ReconnectContext) => number | null;

/** The part of the WebSocket API the client uses; the browser's and the `ws` package's both fit. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: { data: any }) => void) | null;
  onerror: ((ev: any) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** The part of the Web Storage API used to keep the session across page reloads. */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}
