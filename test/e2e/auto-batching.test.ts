import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { status } from "@grpc/grpc-js";
import { CacheClient, CacheError, type Generation } from "../../src/index.js";
import { isCacheError } from "../helpers/assertions.js";
import { startScriptedServer, type ScriptedServer } from "../helpers/scripted-server.js";

const textOf = (i: number): Generation[] => [{ text: `answer ${i}` }];

describe("CacheClient auto-batching", function () {
  this.timeout(20_000);
  let server: ScriptedServer;
  let client: CacheClient;

  afterEach(async () => {
    await client?.close();
    server?.stop();
  });

  it("sends the calls of one turn of the event loop together, up to 24 operations a message", async () => {
    server = await startScriptedServer();
    client = new CacheClient({ address: server.address });
    await Promise.all(Array.from({ length: 100 }, (_, i) => client.aupdate(`p${i}`, "llm", textOf(i))));
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => client.alookup(`p${i}`, "llm")));

    assert.deepEqual(results, Array.from({ length: 100 }, (_, i) => textOf(i)), "each caller got its own answer");
    assert.deepEqual(server.streamMessages.map((operations) => operations.length), [24, 24, 24, 24, 4, 24, 24, 24, 24, 4]);
    const lookups = server.streamMessages.slice(5).flat();
    assert.deepEqual(lookups.map((operation) => operation.operation.case), Array(100).fill("lookup"));
    assert.deepEqual(new Set(lookups.map((operation) => operation.id)).size, 100, "every operation has its own id");
    assert.deepEqual(server.unaryCalls, {}, "no unary calls");
  });

  it("gathers calls made within windowMs into one message", async () => {
    server = await startScriptedServer();
    client = new CacheClient({ address: server.address, batching: { windowMs: 100 } });
    const first = client.alookup("a", "llm");
    await new Promise((resolve) => setTimeout(resolve, 20));
    const second = client.alookup("b", "llm");
    assert.deepEqual(await Promise.all([first, second]), [null, null]);
    assert.deepEqual(server.streamMessages.map((operations) => operations.length), [2]);
  });

  it("makes one unary call per operation when batching is off", async () => {
    server = await startScriptedServer();
    client = new CacheClient({ address: server.address, batching: false });
    await Promise.all([client.aupdate("p", "llm", textOf(1)), client.alookup("p", "llm"), client.alookup("q", "llm")]);
    assert.deepEqual(server.unaryCalls, { Update: 1, Lookup: 2 });
    assert.equal(server.streamMessages.length, 0);
  });

  it("sends an operation too large to share a message as a unary call", async () => {
    server = await startScriptedServer();
    client = new CacheClient({ address: server.address });
    const large = [{ text: "x".repeat(2 * 1024 * 1024) }];
    await Promise.all([client.aupdate("large", "llm", large), client.aupdate("small", "llm", textOf(1))]);
    assert.deepEqual(server.unaryCalls, { Update: 1 });
    assert.deepEqual(server.streamMessages.map((operations) => operations.length), [1]);
    assert.deepEqual(await client.alookup("large", "llm"), large);
  });

  it("rejects only the caller whose operation the server refused", async () => {
    server = await startScriptedServer({
      answer: (operation) =>
        operation.operation.case === "lookup" && operation.operation.value.prompt === "refused"
          ? { result: { id: operation.id, result: { case: "error", value: { code: status.RESOURCE_EXHAUSTED, message: "too big for this test" } } } }
          : undefined,
    });
    client = new CacheClient({ address: server.address });
    const calls = ["a", "refused", "b"].map((prompt) => client.alookup(prompt, "llm"));
    await assert.rejects(calls[1]!, isCacheError("RESOURCE_EXHAUSTED", /^Lookup failed: RESOURCE_EXHAUSTED: too big for this test$/));
    assert.deepEqual(await Promise.all([calls[0], calls[2]]), [null, null]);
  });

  it("rejects only the caller whose input the client refused, before anything is sent", async () => {
    server = await startScriptedServer();
    client = new CacheClient({ address: server.address });
    const good = client.aupdate("good", "llm", textOf(1));
    const bad = client.aupdate("bad", "llm", [{ text: null }] as unknown as Generation[]);
    await assert.rejects(bad, { name: "TypeError", message: "generations[0].text must be a string, got null" });
    await good;
    assert.deepEqual(server.streamMessages.map((operations) => operations.length), [1]);
  });

  it("gives each operation its own deadline", async () => {
    server = await startScriptedServer({ answer: () => ({ delayMs: 400 }) });
    client = new CacheClient({ address: server.address, timeoutMs: 5_000 });
    await client.aupdate("p", "llm", textOf(1)); // 400 ms: within the client's deadline
    const start = performance.now();
    const hurried = client.alookup("p", "llm", { timeoutMs: 100 });
    const patient = client.alookup("p", "llm");
    let patientDone = false;
    void patient.then(() => (patientDone = true));
    await assert.rejects(hurried, isCacheError("DEADLINE_EXCEEDED", /^Lookup failed: DEADLINE_EXCEEDED: no result within 100 ms$/));
    const hurriedMs = performance.now() - start;
    assert.ok(hurriedMs >= 90, `the hurried caller gave up after ${hurriedMs} ms`);
    assert.equal(patientDone, false, "the hurried caller gave up while the patient one still waited");
    assert.deepEqual(await patient, textOf(1), "the patient caller got its answer");
  });

  it("rejects a cancelled caller among many and answers the rest", async () => {
    server = await startScriptedServer({ answer: () => ({ delayMs: 200 }) });
    client = new CacheClient({ address: server.address });
    await client.aupdateMany(Array.from({ length: 10 }, (_, i) => [`p${i}`, "llm", textOf(i)] as [string, string, Generation[]]));
    const controller = new AbortController();
    const calls = Array.from({ length: 10 }, (_, i) => client.alookup(`p${i}`, "llm", i === 4 ? { signal: controller.signal } : {}));
    setTimeout(() => controller.abort(), 50);
    const settled = await Promise.allSettled(calls);
    settled.forEach((outcome, i) => {
      if (i === 4) {
        assert.equal(outcome.status, "rejected");
        isCacheError("CANCELLED", /^Lookup failed: CANCELLED: cancelled by the caller$/)((outcome as PromiseRejectedResult).reason);
      } else {
        assert.deepEqual(outcome, { status: "fulfilled", value: textOf(i) });
      }
    });
  });

  it("fails the operations in flight when the stream breaks, and opens a new stream for the next ones", async () => {
    server = await startScriptedServer({ answer: () => ({ delayMs: 10_000 }) });
    const port = server.port;
    client = new CacheClient({ address: server.address });
    const inFlight = Array.from({ length: 20 }, (_, i) => client.alookup(`p${i}`, "llm"));
    while (server.streamMessages.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    server.stop();
    const settled = await Promise.allSettled(inFlight);
    for (const outcome of settled) {
      assert.equal(outcome.status, "rejected");
      const error = (outcome as PromiseRejectedResult).reason;
      assert.ok(error instanceof CacheError, String(error));
      assert.equal(error.code, "UNAVAILABLE", error.message);
      assert.match(error.message, /^Lookup failed: UNAVAILABLE: the stream was cancelled \(Call cancelled\)$/);
    }

    server = await startScriptedServer({ port });
    await client.aupdate("after", "llm", textOf(1));
    assert.deepEqual(await client.alookup("after", "llm"), textOf(1));
  });

  it("does not fail an operation on a new stream when an old, idle stream ends late", async () => {
    // The client ends a stream idle for a second; this server takes 400 ms to end its side.
    // An operation sent meanwhile goes on a new stream, and must not be failed by the old one's end.
    server = await startScriptedServer({ endDelayMs: 400, answer: (operation) => (operation.id > 1 ? { delayMs: 600 } : undefined) });
    client = new CacheClient({ address: server.address });
    assert.equal(await client.alookup("first", "llm"), null);
    await new Promise((resolve) => setTimeout(resolve, 1_150));
    assert.equal(await client.alookup("second", "llm"), null);
    assert.equal(server.streamMessages.length, 2);
  });

  it("keeps no process alive once idle, even without close()", async () => {
    server = await startScriptedServer();
    client = new CacheClient({ address: server.address });
    const script = `
      import { CacheClient } from ${JSON.stringify(new URL("../../src/index.js", import.meta.url).href)};
      const client = new CacheClient({ address: ${JSON.stringify(server.address)} });
      await client.aupdate("p", "llm", [{ text: "x" }]);
      console.log(JSON.stringify(await client.alookup("p", "llm")));`;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
    let output = "";
    child.stdout.on("data", (chunk) => (output += chunk));
    const start = performance.now();
    const [code] = await once(child, "exit");
    assert.equal(code, 0);
    assert.equal(output, '[{"text":"x"}]\n');
    assert.ok(performance.now() - start < 5_000, "the process exited on its own");
  });
});
