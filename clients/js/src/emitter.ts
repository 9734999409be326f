/**
 * A minimal typed event emitter shared by the client and the WebRTC helper.
 * An exception in one listener is reported (reportError, or rethrown on a
 * fresh task) and never stops the other listeners or the caller's flow.
 */
export class Emitter<E> {
  private readonly listeners: { [K in keyof E]?: Set<(ev: E[K]) => void> } = {};

  /** Subscribes to an event; returns the function that unsubscribes. */
  on<K extends keyof E>(type: K, fn: (ev: E[K]) => void): () => void {
    (this.listeners[type] ??= new Set()).add(fn);
    return () => this.off(type, fn);
  }

  off<K extends keyof E>(type: K, fn: (ev: E[K]) => void): void {
    this.listeners[type]?.delete(fn);
  }

  protected emit<K extends keyof E>(type: K, ev: E[K]): void {
    for (const fn of [...(this.listeners[type] ?? [])]) {
      try {
        fn(ev);
      } catch (err) {
        const g = globalThis as any;
        if (typeof g.reportError === 'function') g.reportError(err);
        else
          setTimeout(() => {
            throw err;
          });
      }
    }
  }
}
