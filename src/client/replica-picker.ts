import { connectivityState, type Client } from "@grpc/grpc-js";
import { openChannel, type ChannelSettings } from "../rpc/channel.js";
import { CacheError } from "../rpc/errors.js";

/** One attempt of a call on one replica, given the time left of the call's deadline. */
export type Attempt<R> = (replica: number, timeoutMs: number) => Promise<R>;

/**
 * A client's replicas, a channel to each, and the two rules every call of
 * CacheClient follows, async or blocking (the blocking methods' worker keeps
 * a picker of its own, built from the same settings):
 *
 * - Where a call goes: round robin over the replicas whose channel is not in
 *   TRANSIENT_FAILURE. When none is healthy it goes to the next one anyway
 *   and fails fast there with UNAVAILABLE.
 * - When it goes elsewhere: a call that fails with UNAVAILABLE and is safe to
 *   send twice is sent again to a replica it has not tried yet, with what is
 *   left of its deadline, as long as some is left.
 *
 * With one replica there is nothing to pick and nowhere to retry: a call is
 * made exactly as a client of one server makes it.
 */
export class ReplicaPicker {
  /** One per replica, in the order given. */
  readonly channels: readonly Client[];
  #next = 0;

  constructor(replicas: readonly ChannelSettings[]) {
    this.channels = replicas.map((replica) => openChannel(replica));
  }

  /** The replica for a call's next attempt, among those the call has not tried (one must be left). */
  pick(tried?: ReadonlySet<number>): number {
    const count = this.channels.length;
    let fallback = -1;
    for (let step = 0; step < count; step++) {
      const replica = (this.#next + step) % count;
      if (tried?.has(replica)) continue;
      if (fallback < 0) fallback = replica;
      // `true`: an idle channel starts connecting, so it is ready when its turn comes.
      if (this.channels[replica]!.getChannel().getConnectivityState(true) !== connectivityState.TRANSIENT_FAILURE) {
        this.#next = (replica + 1) % count;
        return replica;
      }
    }
    this.#next = (fallback + 1) % count;
    return fallback;
  }

  /**
   * Makes a call: `attempt` on the replica `first` (default: the next pick)
   * and, while it fails with UNAVAILABLE, if `replayable`, on each replica
   * not tried yet, until the call's deadline, `timeoutMs` from now.
   */
  call<R>(timeoutMs: number, replayable: boolean, attempt: Attempt<R>, first?: number): Promise<R> {
    if (this.channels.length === 1) return attempt(0, timeoutMs);
    return this.#failingOver(timeoutMs, replayable, attempt, first ?? this.pick());
  }

  close(): void {
    for (const channel of this.channels) channel.close();
  }

  async #failingOver<R>(timeoutMs: number, replayable: boolean, attempt: Attempt<R>, first: number): Promise<R> {
    const deadline = performance.now() + timeoutMs;
    const tried = new Set<number>();
    let replica = first;
    let remainingMs = timeoutMs;
    for (;;) {
      tried.add(replica);
      try {
        return await attempt(replica, remainingMs);
      } catch (error) {
        remainingMs = Math.floor(deadline - performance.now());
        const retry = replayable && error instanceof CacheError && error.code === "UNAVAILABLE";
        if (!retry || tried.size === this.channels.length || remainingMs <= 0) throw error;
      }
      replica = this.pick(tried);
    }
  }
}
