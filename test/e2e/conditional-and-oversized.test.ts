import assert from "node:assert/strict";
import { CacheClient, EntryTooLargeError, type Generation } from "../../src/index.js";
import { startServerProcess, type ServerProcess } from "../helpers/server-process.js";

describe("conditional updates and oversized entries over gRPC", function () {
  this.timeout(20_000);
  let server: ServerProcess;

  before(async () => {
    server = await startServerProcess(["--max-bytes", "64KiB"]);
  });
  after(() => server.stop());

  for (const batching of [true, false]) {
    it(`lets exactly one of two racing clients store each answer (batching ${batching ? "on" : "off"})`, async () => {
      const first = new CacheClient({ address: server.address, batching, namespace: `race-${batching}` });
      const second = new CacheClient({ address: server.address, batching, namespace: `race-${batching}` });
      try {
        const keys = Array.from({ length: 100 }, (_, i) => `prompt ${i}`);
        const [firstStored, secondStored] = (await Promise.all(
          [first, second].map((client, c) =>
            Promise.all(keys.map((key) => client.aupdateIfAbsent(key, "llm", [{ text: `client ${c}` }]))),
          ),
        )) as [boolean[], boolean[]];
        for (let i = 0; i < keys.length; i++) {
          assert.notEqual(firstStored[i], secondStored[i], `exactly one stored ${keys[i]}`);
          const winner = firstStored[i] ? "client 0" : "client 1";
          assert.deepEqual(await first.alookup(keys[i]!, "llm"), [{ text: winner }], "the value is the winner's");
        }
        const { namespaces } = await first.astats();
        assert.equal(namespaces[`race-${batching}`]!.updatesNotStored, 100);
      } finally {
        await first.close();
        await second.close();
      }
    });
  }

  it("answers a conditional update through the blocking methods too", async () => {
    const client = new CacheClient({ address: server.address, namespace: "blocking" });
    try {
      assert.equal(client.updateIfAbsent("p", "llm", [{ text: "one" }]), true);
      assert.equal(client.updateIfAbsent("p", "llm", [{ text: "two" }]), false);
      assert.deepEqual(client.lookup("p", "llm"), [{ text: "one" }]);
      assert.equal(client.stats().namespaces.blocking!.updatesNotStored, 1);
    } finally {
      await client.close();
    }
  });

  describe("an entry larger than the byte budget", () => {
    const huge: Generation[] = [{ text: "x".repeat(70 * 1024) }];
    const isTooLarge = (method: string) => (error: unknown) => {
      assert.ok(error instanceof EntryTooLargeError, String(error));
      assert.match(error.message, new RegExp(`^${method} failed: RESOURCE_EXHAUSTED: entry too large: \\d+ bytes accounted, more than the cache's byte budget of 65536$`));
      return true;
    };

    for (const batching of [true, false]) {
      it(`is refused with EntryTooLargeError through aupdate (batching ${batching ? "on" : "off"})`, async () => {
        const client = new CacheClient({ address: server.address, batching });
        try {
          const [refused, fine] = await Promise.allSettled([client.aupdate("huge", "llm", huge), client.aupdate("fine", "llm", [{ text: "ok" }])]);
          assert.equal(refused.status, "rejected");
          isTooLarge("Update")((refused as PromiseRejectedResult).reason);
          assert.equal(fine.status, "fulfilled", "its neighbour in the same batch is stored");
          assert.deepEqual(await client.alookup("fine", "llm"), [{ text: "ok" }]);
          assert.equal(await client.alookup("huge", "llm"), null);
        } finally {
          await client.close();
        }
      });
    }

    it("is refused with EntryTooLargeError through the blocking update", async () => {
      const client = new CacheClient({ address: server.address });
      try {
        assert.throws(() => client.update("huge", "llm", huge), isTooLarge("Update"));
      } finally {
        await client.close();
      }
    });

    it("fails a whole batch update, which then stores none", async () => {
      const client = new CacheClient({ address: server.address, namespace: "batch" });
      try {
        await assert.rejects(
          client.aupdateMany([
            ["small", "llm", [{ text: "s" }]],
            ["huge", "llm", huge],
          ]),
          isTooLarge("BatchUpdate"),
        );
        assert.equal(await client.alookup("small", "llm"), null);
      } finally {
        await client.close();
      }
    });
  });
});
