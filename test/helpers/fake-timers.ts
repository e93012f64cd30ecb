import type { LeaseTimers } from "../../src/engine/leases.js";

interface Timer {
  due: number;
  /** Of two timers due at once, the one started first fires first. */
  order: number;
  fire: () => void;
}

function before(a: Timer, b: Timer): boolean {
  return a.due < b.due || (a.due === b.due && a.order < b.order);
}

/**
 * Timers on a clock that moves only when told to: advance() fires, in order
 * of when they are due, the timers that come due on the way.
 */
export class FakeTimers implements LeaseTimers {
  now = 0;
  #pending: Timer[] = [];
  #order = 0;

  start(ms: number, fire: () => void): () => void {
    const timer = { due: this.now + ms, order: this.#order++, fire };
    this.#pending.push(timer);
    return () => {
      this.#pending = this.#pending.filter((pending) => pending !== timer);
    };
  }

  advance(ms: number): void {
    const until = this.now + ms;
    for (;;) {
      const next = this.#pending.reduce<Timer | undefined>((earliest, timer) => (timer.due <= until && (!earliest || before(timer, earliest)) ? timer : earliest), undefined);
      if (!next) break;
      this.#pending = this.#pending.filter((pending) => pending !== next);
      this.now = next.due;
      next.fire();
    }
    this.now = until;
  }

  /** Timers not yet fired nor cancelled. */
  get pending(): number {
    return this.#pending.length;
  }
}
