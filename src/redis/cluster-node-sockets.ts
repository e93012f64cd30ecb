/**
 * How many times the client of a Cluster node that it has never reached
 * tries to connect before it gives up: enough for a node that refused one
 * connection while it started, few enough that a new slot map is not held
 * up for long (see ClusterNodeSockets).
 */
export const NEVER_READY_ATTEMPTS = 3;

type ReconnectStrategy = (retries: number, cause: Error) => number | Error;

/**
 * The sockets of a Cluster's node clients (node-redis's `nodeAddressMap`),
 * made so that a client that has never reached its node gives up rather
 * than retry for ever.
 *
 * A slot map can name an address where no one answers: a node whose
 * `cluster-announce-ip` or `-port` is wrong, promoted in a failover, say.
 * node-redis finishes a new slot map only once every new node's client has
 * connected, and a client that retries for ever holds that slot map, and
 * every later one, for good: commands for the node's slots wait out their
 * deadlines, and the slot map is never asked for again, even once the
 * address is right. Given up, the client is dropped: a command for those
 * slots tries once more and fails UNAVAILABLE, and `onGiveUp` can ask for a
 * new slot map, which finds the node once its address is right.
 *
 * A client that has been ready retries for ever, as a single Redis's does:
 * node-redis keeps a node's client across slot maps, so one that gave up
 * would stay dead while its node came back.
 */
export class ClusterNodeSockets {
  /** How many times a client has become ready, by node address. */
  readonly #readyCounts = new Map<string, number>();
  readonly #backoff: (retries: number) => number;
  readonly #onGiveUp: (address: string) => void;

  constructor(backoff: (retries: number) => number, onGiveUp: (address: string) => void) {
    this.#backoff = backoff;
    this.#onGiveUp = onGiveUp;
  }

  /** The socket of a client node-redis makes now for the node at `address` ("host:port"). */
  socketFor(address: string): { host: string; port: number; reconnectStrategy: ReconnectStrategy } {
    const colon = address.lastIndexOf(":");
    const readyBefore = this.#readyCount(address);
    return {
      host: address.slice(0, colon),
      port: Number(address.slice(colon + 1)),
      reconnectStrategy: (retries, cause) => {
        const beenReady = this.#readyCount(address) > readyBefore;
        if (beenReady || retries < NEVER_READY_ATTEMPTS - 1) return this.#backoff(retries);
        this.#onGiveUp(address);
        return new Error(`no Redis answers at ${address}, where the Cluster's slot map has a node: ${cause.message}`);
      },
    };
  }

  /** Counts a client that became ready (node-redis's "node-ready" event). */
  ready(address: string): void {
    this.#readyCounts.set(address, this.#readyCount(address) + 1);
  }

  #readyCount(address: string): number {
    return this.#readyCounts.get(address) ?? 0;
  }
}
