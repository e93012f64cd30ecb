import assert from "node:assert/strict";
import { once } from "node:events";
import http2 from "node:http2";
import { setTimeout as sleep } from "node:timers/promises";
import { startServer, type RunningServer } from "../../src/index.js";

/** What a client learns of the server's HTTP/2 receive window: the stream window from its settings, the connection's from its window updates. */
async function windowsSeenByAClient(server: RunningServer): Promise<{ stream: number | undefined; connection: number }> {
  const session = http2.connect(`http://${server.address}`);
  try {
    const [settings] = (await once(session, "remoteSettings")) as [http2.Settings];
    // The connection's window grows by a WINDOW_UPDATE that follows the settings.
    for (let waited = 0; session.state.remoteWindowSize === 65_535 && waited < 2_000; waited += 20) await sleep(20);
    return { stream: settings.initialWindowSize, connection: session.state.remoteWindowSize! };
  } finally {
    session.close();
  }
}

describe("the server's HTTP/2 receive window", () => {
  let server: RunningServer | undefined;
  afterEach(async () => {
    await server?.shutdown(100);
    server = undefined;
  });

  it("is 4 MiB by default, for the connection and for each call, instead of Node's 64 KiB", async () => {
    server = await startServer({ port: 0 });
    assert.deepEqual(await windowsSeenByAClient(server), { stream: 4 * 1024 * 1024, connection: 4 * 1024 * 1024 });
  });

  it("is what --receive-window (connectionLimits.receiveWindowBytes) says", async () => {
    server = await startServer({ port: 0, connectionLimits: { receiveWindowBytes: 1024 * 1024 } });
    assert.deepEqual(await windowsSeenByAClient(server), { stream: 1024 * 1024, connection: 1024 * 1024 });
  });
});
