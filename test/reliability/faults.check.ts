import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { CacheClient, CacheError } from "../../src/index.js";
import { closedPort } from "../helpers/stalled-server.js";
import { startServerProcess, type ServerProcess } from "../helpers/server-process.js";
import { add, record } from "./figures.js";

/** Clients that keep writing and reading, counting what succeeds and how the rest fail. */
class Load {
  readonly errors = new Map<string, number>();
  /** Updates the server acknowledged: key → the value it took. */
  readonly acknowledged = new Map<string, string>();
  successes = 0;
  #running = true;
  readonly #done: Promise<void>;

  constructor(readonly clients: CacheClient[]) {
    this.#done = Promise.all(clients.map((client, c) => this.#loop(client, c))).then(() => {});
  }

  async #loop(client: CacheClient, c: number): Promise<void> {
    for (let i = 0; this.#running; i++) {
      const key = `client ${c} key ${i}`;
      const value = `value ${i} of client ${c}`;
      try {
        await client.aupdate(key, "llm", [{ text: value }]);
        this.acknowledged.set(key, value);
        await client.alookup(key, "llm");
        this.successes++;
      } catch (error) {
        const code = error instanceof CacheError ? error.code : String(error);
        this.errors.set(code, (this.errors.get(code) ?? 0) + 1);
        await sleep(20); // as a real caller would back off a little
      }
    }
  }

  /** Waits until `count` more operations have succeeded. */
  async succeedsAgain(count: number, timeoutMs = 15_000): Promise<number> {
    const target = this.successes + count;
    const started = Date.now();
    while (this.successes < target) {
      if (Date.now() - started > timeoutMs) throw new Error(`no recovery within ${timeoutMs} ms: ${JSON.stringify([...this.errors])}`);
      await sleep(20);
    }
    return Date.now() - started;
  }

  stop(): Promise<void> {
    this.#running = false;
    return this.#done;
  }
}

function clientsOf(address: string): CacheClient[] {
  return [true, true, false, false].map((batching) => new CacheClient({ address, batching, timeoutMs: 3_000 }));
}

describe("faults", function () {
  this.timeout(120_000);

  it("survives kill -9 under load: clients see UNAVAILABLE, reconnect and resume once the server is back", async () => {
    const port = await closedPort();
    let server: ServerProcess = await startServerProcess(["--port", String(port)]);
    const clients = clientsOf(server.address);
    const load = new Load(clients);
    const recoveries: number[] = [];
    try {
      await load.succeedsAgain(200);
      for (let fault = 0; fault < 3; fault++) {
        server.child.kill("SIGKILL");
        await server.exited();
        add("faults injected", 1);
        await sleep(300);
        server = await startServerProcess(["--port", String(port)]);
        recoveries.push(await load.succeedsAgain(200));
      }
    } finally {
      await load.stop();
      for (const client of clients) await client.close();
      await server.stop();
    }
    record("client errors while the server was killed", [...load.errors].map(([code, count]) => `${code} ${count}`).join(", "));
    record("slowest recovery after a restart", `${Math.max(...recoveries)} ms`);
    assert.ok(load.errors.size > 0, "the kills were felt");
    assert.deepEqual([...load.errors.keys()], ["UNAVAILABLE"], "every failure was UNAVAILABLE");
  });

  it("loses no acknowledged update across a SIGTERM and a restart from the snapshot", async () => {
    const port = await closedPort();
    const snapshot = join(mkdtempSync(join(tmpdir(), "llmcache-faults-")), "cache.snapshot");
    const args = ["--port", String(port), "--snapshot", snapshot];
    let server = await startServerProcess(args);
    const clients = clientsOf(server.address);
    const load = new Load(clients);
    try {
      await load.succeedsAgain(300);
      server.child.kill("SIGTERM");
      assert.equal((await server.exited()).code, 0, "a clean stop");
      add("faults injected", 1);
      server = await startServerProcess(args);
      await load.succeedsAgain(300);
    } finally {
      await load.stop();
    }
    const checker = clients[0]!;
    try {
      const keys = [...load.acknowledged.keys()];
      let lost = 0;
      for (let first = 0; first < keys.length; first += 500) {
        const batch = keys.slice(first, first + 500);
        const found = await checker.alookupMany(batch.map((key) => [key, "llm"] as const));
        found.forEach((generations, i) => {
          if (generations?.[0]?.text !== load.acknowledged.get(batch[i]!)) lost++;
        });
      }
      record("acknowledged updates across SIGTERM and restart", keys.length);
      add("entries lost", lost);
      assert.ok(keys.length > 500, `only ${keys.length} acknowledged updates`);
      assert.equal(lost, 0, `${lost} acknowledged updates were lost`);
    } finally {
      for (const client of clients) await client.close();
      await server.stop();
    }
  });
});
