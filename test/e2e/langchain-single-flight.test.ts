import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { get } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CacheClient, type LeaseStats } from "../../src/index.js";
import { startServerProcess, type ServerProcess } from "../helpers/server-process.js";
import type { WorkerOptions } from "./fixtures/single-flight-worker.js";

/*
 * Single flight end to end: a real server child process, and client
 * processes (test/e2e/fixtures/single-flight-worker.ts, and the Python
 * test/python/single_flight_burst.py) that each make concurrent calls for
 * one prompt. The workers print a line for every call of their fake model
 * (under single flight only a leaseholder calls it), so the test knows who
 * held each lease and when it was granted.
 */

const WORKER = fileURLToPath(new URL("./fixtures/single-flight-worker.js", import.meta.url));
const REPO = fileURLToPath(new URL("../../../", import.meta.url));
const PYTHON = `${REPO}.venv/bin/python`;
const PYTHON_BURST = `${REPO}test/python/single_flight_burst.py`;

interface WorkerEvent {
  event: string;
  [field: string]: unknown;
}
interface ModelCall extends WorkerEvent {
  event: "model-call";
  call: number;
  at: number;
  action: "answer" | "throw" | "hang";
}
interface BurstResult {
  modelCalls: number;
  answers: string[];
  errors: string[];
}

const children = new Set<ChildProcess>();

/** A client process of a burst: its JSON lines as they come, a "go" on stdin, its end. */
class Caller {
  readonly child: ChildProcess;
  readonly lines: WorkerEvent[] = [];
  #stdout = "";
  #stderr = "";
  readonly #listeners = new Set<() => void>();
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(
    readonly name: string,
    command: string,
    args: string[],
  ) {
    this.child = spawn(command, args, { stdio: ["pipe", "pipe", "pipe"] });
    children.add(this.child);
    this.exited = once(this.child, "exit").then(([code, signal]) => {
      children.delete(this.child);
      this.#notify();
      return { code, signal };
    });
    this.child.stdin!.on("error", () => {}); // a killed caller's stdin
    this.child.stderr!.on("data", (chunk) => (this.#stderr += chunk));
    this.child.stdout!.on("data", (chunk) => {
      this.#stdout += chunk;
      let newline;
      while ((newline = this.#stdout.indexOf("\n")) >= 0) {
        const line = this.#stdout.slice(0, newline);
        this.#stdout = this.#stdout.slice(newline + 1);
        if (line.trim() === "") continue;
        try {
          this.lines.push(JSON.parse(line) as WorkerEvent);
        } catch {
          this.lines.push({ event: "unparsed", line });
        }
      }
      this.#notify();
    });
  }

  #notify(): void {
    for (const listener of this.#listeners) listener();
  }

  get stderr(): string {
    return this.#stderr;
  }

  get done(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  /** The first line that matches, waiting up to timeoutMs for it. */
  waitFor<T extends WorkerEvent>(matches: (line: WorkerEvent) => boolean, timeoutMs: number, what: string): Promise<T> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const line = this.lines.find(matches);
        if (line) {
          finish();
          resolve(line as T);
        } else if (this.done) {
          finish();
          reject(new Error(`${this.name} exited (${this.child.exitCode ?? this.child.signalCode}) before ${what}; lines ${JSON.stringify(this.lines)}; stderr: ${this.#stderr}`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`${this.name}: no ${what} within ${timeoutMs} ms; lines ${JSON.stringify(this.lines)}; stderr: ${this.#stderr}`));
      }, timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        this.#listeners.delete(check);
      };
      this.#listeners.add(check);
      check();
    });
  }

  go(): void {
    this.child.stdin!.write("go\n");
  }

  modelCalls(): ModelCall[] {
    return this.lines.filter((line): line is ModelCall => line.event === "model-call");
  }
}

/** A worker process (single-flight-worker.ts). */
function worker(options: Omit<WorkerOptions, "address">, address: string): Caller {
  return new Caller(`worker ${options.id}`, process.execPath, [WORKER, JSON.stringify({ ...options, address })]);
}

async function workerResult(caller: Caller, timeoutMs: number): Promise<BurstResult> {
  const line = await caller.waitFor((l) => l.event === "result", timeoutMs, "result");
  return line as unknown as BurstResult;
}

/** The Python side (single_flight_burst.py): one JSON line, {"model_calls", "answers", "errors"}. */
function pythonBurst(args: { address: string; namespace: string; prompt: string; llmString: string; callers: number; modelMs: number; leaseMs: number; waitMs: number }): Caller {
  return new Caller("python", PYTHON, [
    PYTHON_BURST,
    ...["--address", args.address, "--namespace", args.namespace, "--prompt", args.prompt, "--llm-string", args.llmString],
    ...["--callers", String(args.callers), "--model-ms", String(args.modelMs), "--lease-ms", String(args.leaseMs), "--wait-ms", String(args.waitMs)],
  ]);
}

async function pythonResult(caller: Caller, timeoutMs: number): Promise<BurstResult> {
  const line = await caller.waitFor((l) => "model_calls" in l, timeoutMs, "result");
  const { model_calls, answers, errors } = line as unknown as { model_calls: number; answers: string[]; errors: string[] };
  return { modelCalls: model_calls, answers, errors };
}

function httpGet(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    get(url, (response) => {
      let body = "";
      response.on("data", (chunk) => (body += chunk));
      response.on("end", () => resolve(body));
    }).on("error", reject);
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function sum(results: BurstResult[], field: "modelCalls"): number {
  return results.reduce((total, result) => total + result[field], 0);
}

describe("single flight end to end: LangChain JS callers in several processes, one real server", function () {
  this.timeout(25_000);
  let server: ServerProcess;
  let client: CacheClient;
  let scratch: string;
  let metricsPort: number;

  beforeEach(async () => {
    server = await startServerProcess(["--metrics-port", "0"]);
    metricsPort = Number(/metrics on port (\d+)/.exec(server.stdout())![1]);
    client = new CacheClient({ address: server.address });
    scratch = mkdtempSync(join(tmpdir(), "llmcache-single-flight-"));
  });
  afterEach(async () => {
    // Every caller still running (a test that failed, the kill -9 test's hung holder if its kill never came) ends here.
    const running = [...children].filter((child) => child.exitCode === null && child.signalCode === null);
    for (const child of running) child.kill("SIGKILL");
    await Promise.all(running.map((child) => once(child, "exit")));
    children.clear();
    await client.close();
    await server.stop();
    rmSync(scratch, { recursive: true, force: true });
  });

  /** A metric of the server's, as a number (undefined: not there). */
  async function metric(pattern: string): Promise<number | undefined> {
    const body = await httpGet(`http://127.0.0.1:${metricsPort}/metrics`);
    const value = new RegExp(`^${pattern} (\\S+)$`, "m").exec(body)?.[1];
    return value === undefined ? undefined : Number(value);
  }

  /** Waits until `condition` of the metric holds, for up to timeoutMs; answers the last value. */
  async function metricUntil(pattern: string, condition: (value: number | undefined) => boolean, timeoutMs: number): Promise<number | undefined> {
    const deadline = Date.now() + timeoutMs;
    let value = await metric(pattern);
    while (!condition(value) && Date.now() < deadline) {
      await sleep(20);
      value = await metric(pattern);
    }
    return value;
  }

  async function leaseStats(): Promise<LeaseStats> {
    return (await client.astats()).total.leases;
  }

  /** Starts `count` LangChain workers and waits until each is connected and ready for its "go". */
  async function langchainWorkers(count: number, options: Omit<WorkerOptions, "address" | "id" | "mode">): Promise<Caller[]> {
    const workers = Array.from({ length: count }, (_, index) => worker({ id: String(index), mode: "langchain", ...options }, server.address));
    await Promise.all(workers.map((w) => w.waitFor((l) => l.event === "ready", 15_000, "ready")));
    return workers;
  }

  describe("a burst of 50 invokes of one prompt from 5 processes (10 each)", () => {
    const burst = { namespace: "burst", prompt: "What is single flight?", callers: 10, modelMs: 500 };

    it("with single flight on, calls the model exactly once and gives all 50 the one answer", async () => {
      const workers = await langchainWorkers(5, { ...burst, lease: { leaseMs: 10_000, waitMs: 15_000 } });
      for (const w of workers) w.go();
      const results = await Promise.all(workers.map((w) => workerResult(w, 15_000)));

      assert.deepEqual(results.flatMap((r) => r.errors), [], "no invoke failed");
      assert.equal(sum(results, "modelCalls"), 1, `model calls by process: ${results.map((r) => r.modelCalls)}`);
      const holder = workers.find((w) => w.modelCalls().length > 0)!;
      const answers = results.flatMap((r) => r.answers);
      assert.equal(answers.length, 50);
      assert.deepEqual(new Set(answers), new Set([`answer from worker ${holder.name.slice("worker ".length)}, call 1`]), "everyone has the leaseholder's answer");

      const leases = await leaseStats();
      assert.equal(leases.granted, 1, JSON.stringify(leases));
      assert.equal(leases.filled, 1, JSON.stringify(leases));
      assert.equal(leases.waitsTimedOut, 0, JSON.stringify(leases));
      // The leaseholder's own process has 9 other callers: more than 9 served by its fill means other processes waited for it.
      assert.ok(leases.waitsServed >= 10, `callers of other processes waited for the fill: ${JSON.stringify(leases)}`);
    });

    it("with single flight off, the same burst calls the model more than once (the test can tell)", async () => {
      const workers = await langchainWorkers(5, burst);
      for (const w of workers) w.go();
      const results = await Promise.all(workers.map((w) => workerResult(w, 15_000)));

      assert.deepEqual(results.flatMap((r) => r.errors), []);
      assert.equal(results.flatMap((r) => r.answers).length, 50);
      assert.ok(sum(results, "modelCalls") > 1, `model calls by process: ${results.map((r) => r.modelCalls)}`);
      assert.equal((await leaseStats()).granted, 0);
    });
  });

  it("when the leaseholder's model call throws, its invoke rejects, a waiter takes over: 2 model calls, the other 49 answered", async () => {
    const leaseMs = 1_500;
    const workers = await langchainWorkers(5, {
      namespace: "throws",
      prompt: "Will the first call fail?",
      callers: 10,
      modelMs: 400,
      lease: { leaseMs, waitMs: 15_000 },
      firstMarker: join(scratch, "first-model-call"),
      firstAction: "throw",
    });
    for (const w of workers) w.go();
    // Nobody hangs: every process settles all its invokes within the bound.
    const results = await Promise.all(workers.map((w) => workerResult(w, 15_000)));

    const calls = workers.flatMap((w) => w.modelCalls().map((call) => ({ worker: w.name.slice("worker ".length), ...call })));
    assert.equal(sum(results, "modelCalls"), 2, `model calls: ${JSON.stringify(calls)}`);
    const failed = calls.find((call) => call.action === "throw")!;
    const takeover = calls.find((call) => call.action === "answer")!;
    assert.ok(failed && takeover, JSON.stringify(calls));

    const errors = results.flatMap((r) => r.errors);
    assert.deepEqual(errors, [`the model call failed (worker ${failed.worker}, call ${failed.call})`], "only the invoke whose model threw rejects");
    const answers = results.flatMap((r) => r.answers);
    assert.equal(answers.length, 49);
    assert.deepEqual(new Set(answers), new Set([`answer from worker ${takeover.worker}, call ${takeover.call}`]));
    assert.ok(takeover.at >= failed.at, "the takeover came after the failed call started");
    assert.ok(takeover.at - failed.at <= leaseMs + 1_500, `a waiter took over ${takeover.at - failed.at} ms after the first grant (lease ${leaseMs} ms)`);

    const leases = await leaseStats();
    assert.equal(leases.granted, 2, JSON.stringify(leases));
    assert.equal(leases.filled, 1, JSON.stringify(leases));
    assert.equal(leases.expired + leases.released, 1, `the failed lease ended once: ${JSON.stringify(leases)}`);
    assert.equal(leases.waitsTimedOut, 0, JSON.stringify(leases));
  });

  it("when the leaseholder process is killed (SIGKILL) mid-call, a waiter in another process takes over within leaseMs plus a bound", async () => {
    const leaseMs = 3_000;
    const workers = await langchainWorkers(5, {
      namespace: "killed",
      prompt: "Who finishes the call?",
      callers: 10,
      modelMs: 400,
      lease: { leaseMs, waitMs: 15_000 },
      firstMarker: join(scratch, "first-model-call"),
      firstAction: "hang",
    });
    for (const w of workers) w.go();
    const grants = await Promise.race(
      workers.map((w) => w.waitFor<ModelCall>((l) => l.event === "model-call" && l.action === "hang", 10_000, "the hanging model call").then((call) => ({ holder: w, call }))),
    );
    const { holder, call: granted } = grants;
    // Every other caller, the holder's own 9 too, is waiting on the server for the fill before the holder dies.
    const waiting = await metricUntil("llmcache_lease_waiters", (value) => value === 49, leaseMs / 2);
    assert.equal(waiting, 49, "all 49 other callers wait for the leaseholder");

    holder.child.kill("SIGKILL");
    const killedAt = Date.now();
    assert.equal((await holder.exited).signal, "SIGKILL");
    const survivors = workers.filter((w) => w !== holder);
    const results = await Promise.all(survivors.map((w) => workerResult(w, 15_000)));

    const calls = survivors.flatMap((w) => w.modelCalls().map((call) => ({ worker: w.name.slice("worker ".length), ...call })));
    assert.equal(sum(results, "modelCalls"), 1, `exactly one further model call: ${JSON.stringify(calls)}`);
    const takeover = calls[0]!;
    assert.equal(takeover.action, "answer");
    const sinceGrant = takeover.at - granted.at;
    const sinceKill = takeover.at - killedAt;
    assert.ok(sinceGrant <= leaseMs + 1_500, `a waiter took over ${sinceGrant} ms after the grant (${sinceKill} ms after the kill); lease ${leaseMs} ms`);

    assert.deepEqual(results.flatMap((r) => r.errors), []);
    const answers = results.flatMap((r) => r.answers);
    assert.equal(answers.length, 40, "every surviving invoke answered");
    assert.deepEqual(new Set(answers), new Set([`answer from worker ${takeover.worker}, call ${takeover.call}`]));

    const leases = await leaseStats();
    assert.equal(leases.granted, 2, JSON.stringify(leases));
    assert.equal(leases.expired, 1, `the dead holder's lease expired: ${JSON.stringify(leases)}`);
    assert.equal(leases.filled, 1, JSON.stringify(leases));
    assert.equal(await metric("llmcache_lease_waiters"), 0, "no waiter left behind");
  });

  describe("Python and TypeScript callers on one key", () => {
    const llmString = "cross-language single flight";
    const namespace = "cross-language";

    /** Waits until the Python script has made its Stats call: it is connected, and reads its "go" next. */
    async function pythonReady(python: Caller): Promise<void> {
      const stats = await metricUntil('llmcache_calls_total\\{method="Stats",code="OK"\\}', (value) => (value ?? 0) >= 1, 20_000);
      if ((stats ?? 0) < 1) throw new Error(`the Python script did not connect; stderr: ${python.stderr}`);
    }

    it("a burst of 10 Python aget_or_compute and 10 TypeScript getOrCompute calls makes one model call in all", async () => {
      const prompt = "a cross-language burst";
      const [leaseMs, waitMs, modelMs] = [10_000, 15_000, 1_000];
      const python = pythonBurst({ address: server.address, namespace, prompt, llmString, callers: 10, modelMs, leaseMs, waitMs });
      const typescript = worker({ id: "ts", mode: "get-or-compute", namespace, prompt, llmString, callers: 10, modelMs, lease: { leaseMs, waitMs } }, server.address);
      await Promise.all([typescript.waitFor((l) => l.event === "ready", 15_000, "ready"), pythonReady(python)]);
      typescript.go();
      python.go();
      const [fromPython, fromTypeScript] = await Promise.all([pythonResult(python, 15_000), workerResult(typescript, 15_000)]);

      assert.deepEqual([...fromPython.errors, ...fromTypeScript.errors], []);
      assert.equal(fromPython.modelCalls + fromTypeScript.modelCalls, 1, `Python ${fromPython.modelCalls}, TypeScript ${fromTypeScript.modelCalls}`);
      const expected = fromPython.modelCalls === 1 ? "answer" : "answer from worker ts, call 1";
      assert.deepEqual(new Set([...fromPython.answers, ...fromTypeScript.answers]), new Set([expected]));
      assert.equal(fromPython.answers.length + fromTypeScript.answers.length, 20);

      const leases = await leaseStats();
      assert.equal(leases.granted, 1, JSON.stringify(leases));
      assert.equal(leases.filled, 1, JSON.stringify(leases));
      // The leaseholder's language has 9 other callers: 10 or more served means the other language's waited too.
      assert.ok(leases.waitsServed >= 10, `callers of both languages waited for the fill: ${JSON.stringify(leases)}`);
    });

    it("a TypeScript leaseholder whose compute throws releases its lease: a waiting Python caller takes over at once", async () => {
      const prompt = "a cross-language takeover";
      const leaseMs = 10_000; // long: a takeover by expiry would show
      const typescript = worker(
        { id: "ts", mode: "get-or-compute", namespace, prompt, llmString, callers: 1, modelMs: 2_000, lease: { leaseMs, waitMs: 15_000 }, failFirst: true },
        server.address,
      );
      const python = pythonBurst({ address: server.address, namespace, prompt, llmString, callers: 5, modelMs: 300, leaseMs, waitMs: 15_000 });
      await Promise.all([typescript.waitFor((l) => l.event === "ready", 15_000, "ready"), pythonReady(python)]);
      typescript.go();
      const granted = await typescript.waitFor<ModelCall>((l) => l.event === "model-call", 10_000, "its model call");
      python.go();
      const waiting = await metricUntil("llmcache_lease_waiters", (value) => value === 5, 1_500);
      assert.equal(waiting, 5, "the 5 Python callers wait while the TypeScript caller computes");

      const [fromTypeScript, fromPython] = await Promise.all([workerResult(typescript, 15_000), pythonResult(python, 15_000)]);
      const doneAt = Date.now();
      assert.deepEqual(fromTypeScript, { event: "result", modelCalls: 1, answers: [], errors: ["the model call failed (worker ts, call 1)"] });
      assert.deepEqual(fromPython, { modelCalls: 1, answers: ["answer", "answer", "answer", "answer", "answer"], errors: [] });
      assert.ok(doneAt - granted.at < leaseMs, `settled ${doneAt - granted.at} ms after the grant: before the lease (${leaseMs} ms) could expire`);

      const leases = await leaseStats();
      assert.deepEqual({ granted: leases.granted, released: leases.released, expired: leases.expired, filled: leases.filled }, { granted: 2, released: 1, expired: 0, filled: 1 });
    });
  });
});
