import { CacheClient } from "../../src/index.js";
import { cacheBehaviour, through, type MethodFamily } from "../helpers/cache-behaviour.js";
import { startServerProcess, type ServerProcess } from "../helpers/server-process.js";

describe("CacheClient against a server process", function () {
  this.timeout(30_000);
  // One server per maxsize, started on first use; each test clears it first.
  const remotes = new Map<number | undefined, Promise<{ server: ServerProcess; client: CacheClient; unbatched: CacheClient }>>();

  function remote(maxsize?: number) {
    let started = remotes.get(maxsize);
    if (!started) {
      started = startServerProcess(maxsize === undefined ? [] : ["--maxsize", String(maxsize)]).then((server) => ({
        server,
        client: new CacheClient({ address: server.address }),
        unbatched: new CacheClient({ address: server.address, batching: false }),
      }));
      remotes.set(maxsize, started);
    }
    return started;
  }

  after(async () => {
    for (const started of remotes.values()) {
      const { server, client, unbatched } = await started;
      await client.close();
      await unbatched.close();
      await server.stop();
    }
  });

  for (const family of ["blocking", "async"] satisfies MethodFamily[]) {
    describe(`through its ${family} methods`, () => {
      cacheBehaviour(async (maxsize) => {
        const { client } = await remote(maxsize);
        await client.aclear();
        return through(client, family);
      });
    });
  }

  describe("through its async methods with batching off (one unary call each)", () => {
    cacheBehaviour(async (maxsize) => {
      const { unbatched } = await remote(maxsize);
      await unbatched.aclear();
      return through(unbatched, "async");
    });
  });
});
