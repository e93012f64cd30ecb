import assert from "node:assert/strict";
import { get } from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import type { Lease, LeasedLookup } from "../../src/index.js";
import type { ServerProcess } from "./server-process.js";

/** A promise whose outcome can be read without awaiting it. */
export interface Watched<T> {
  settled: boolean;
  value: T | undefined;
  error: unknown;
  promise: Promise<T>;
}

export function watch<T>(promise: Promise<T>): Watched<T> {
  const watched: Watched<T> = { settled: false, value: undefined, error: undefined, promise };
  promise.then(
    (value) => Object.assign(watched, { settled: true, value }),
    (error: unknown) => Object.assign(watched, { settled: true, error }),
  );
  return watched;
}

/** A promise and the functions that settle it. */
export function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

/** Polls `condition` every 10 ms until it holds; fails after `timeoutMs`. */
export async function waitFor(condition: () => boolean | Promise<boolean>, what: string | (() => string), timeoutMs = 5_000): Promise<void> {
  const until = performance.now() + timeoutMs;
  while (!(await condition())) {
    if (performance.now() > until) assert.fail(`${typeof what === "string" ? what : what()}: not within ${timeoutMs} ms`);
    await sleep(10);
  }
}

/** The lease of a lookup that missed and was granted one. */
export function grantedLease(found: LeasedLookup | undefined): Lease {
  assert.ok(found, "the lookup answered");
  assert.equal(found.generations, null, "a miss");
  assert.ok(found.lease, `a lease, got ${JSON.stringify(found)}`);
  assert.equal(typeof found.lease.token, "string");
  assert.ok(found.lease.token.length > 0, "a token");
  return found.lease;
}

export function httpGet(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    get(url, (response) => {
      let body = "";
      response.on("data", (chunk) => (body += chunk));
      response.on("end", () => resolve({ status: response.statusCode ?? 0, body }));
    }).on("error", reject);
  });
}

/** Reads a server's Prometheus metrics (it must run with --metrics-port 0). */
export class MetricsScraper {
  readonly #url: string;

  constructor(server: ServerProcess) {
    const match = /metrics on port (\d+)/.exec(server.stdout());
    assert.ok(match, "the server printed its metrics port");
    this.#url = `http://127.0.0.1:${match[1]}/metrics`;
  }

  async text(): Promise<string> {
    const { status, body } = await httpGet(this.#url);
    assert.equal(status, 200);
    return body;
  }

  /** The value of one sample, by its name and labels as the exposition writes them (e.g. `{event="granted"}`). */
  async value(name: string, labels = ""): Promise<number> {
    const text = await this.text();
    const line = text.split("\n").find((candidate) => candidate.startsWith(`${name}${labels} `));
    assert.ok(line, `the metrics have ${name}${labels}`);
    return Number(line.slice(line.lastIndexOf(" ") + 1));
  }

  /** The value of a sample that is absent until it is first counted (a labelled counter): 0 while absent. */
  async optionalValue(name: string, labels = ""): Promise<number> {
    const text = await this.text();
    const line = text.split("\n").find((candidate) => candidate.startsWith(`${name}${labels} `));
    return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1));
  }

  /** Lookups waiting for a lease's fill on the server now. */
  waiters(): Promise<number> {
    return this.value("llmcache_lease_waiters");
  }

  async waitForWaiters(count: number, timeoutMs = 5_000): Promise<void> {
    let last = -1;
    await waitFor(async () => (last = await this.waiters()) === count, () => `${count} lookups waiting (last seen ${last})`, timeoutMs);
  }
}
