/**
 * Entry point of the package: the client, its error type, the default
 * reconnect policy and the protocol's types. The WebRTC helper is a separate
 * entry point (`@switchboard-dev/client/webrtc`) so apps that only signal do
 * not carry it.
 */
export {
  Client,
  backoff,
  DEFAULT_BACKOFF_BASE_MS,
  DEFAULT_BACKOFF_CAP_MS,
  DEFAULT_JOIN_TIMEOUT_MS,
  DEFAULT_PING_INTERVAL_MS,
  DEFAULT_PONG_TIMEOUT_MS,
  DEFAULT_REQUEST_TIMEOUT_MS,
} from './client.js';
export type { ClientEvents, ClientOptions, RequestOptions } from './client.js';
export { SwitchboardError } from './errors.js';
export type { ErrorCode } from './errors.js';
export type * from './types.js';
