/**
 * The error every request promise rejects with: the protocol's error code
 * (`PEER_NOT_FOUND`, `VERSION_CONFLICT`, …) or one of the client's own
 * (`TIMEOUT`, `CONNECTION_LOST`, `CLOSED`), and whether trying again may help.
 */

/** Codes of the protocol's `error` messages plus the client's own. */
export type ErrorCode =
  | 'BAD_REQUEST'
  | 'UNKNOWN_TYPE'
  | 'PAYLOAD_TOO_LARGE'
  | 'NOT_JOINED'
  | 'ALREADY_JOINED'
  | 'PEER_ID_TAKEN'
  | 'PEER_NOT_FOUND'
  | 'ROOM_FULL'
  | 'VERSION_CONFLICT'
  | 'RATE_LIMITED'
  | 'UNAUTHORIZED'
  | 'FORBIDDEN'
  | 'UNAVAILABLE'
  | 'INTERNAL'
  /** No reply within the request's timeout (it may or may not have been applied when it was sent). */
  | 'TIMEOUT'
  /** The socket closed after the request was sent and before its reply: it may or may not have been applied. */
  | 'CONNECTION_LOST'
  /** The client is disconnected for good (left, closed, gave up): the request was not sent. */
  | 'CLOSED';

// Errors where the same request, sent again later, can succeed.
const RETRYABLE = ['RATE_LIMITED', 'UNAVAILABLE', 'TIMEOUT', 'CONNECTION_LOST'];

export class SwitchboardError extends Error {
  /** True when sending the same request again later can succeed. The client never does so by itself. */
  readonly retryable: boolean;

  constructor(
    readonly code: ErrorCode | (string & {}),
    message: string,
    /** The room state's current version, on `VERSION_CONFLICT`. */
    readonly version?: number,
  ) {
    super(message);
    this.name = 'SwitchboardError';
    this.retryable = RETRYABLE.includes(code);
  }
}
