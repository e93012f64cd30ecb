import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { CacheClient, CacheError, type CacheClientOptions } from "../../src/index.js";
import { writeAuthFile } from "../helpers/auth-file.js";
import { certificates } from "../helpers/certificates.js";
import { runCli, startServerProcess, type ServerProcess } from "../helpers/server-process.js";

const TEAM_A = "token-of-team-a";
const PYTHON = fileURLToPath(new URL("../../../.venv/bin/python", import.meta.url));
const TEAM_B = "token-of-team-b";

/** Every RPC, as a caller makes it, in namespace `ns`. */
const CALLS: [string, (client: CacheClient, namespace: string) => Promise<unknown>][] = [
  ["Lookup", (client, namespace) => client.alookup("p", "llm", { namespace })],
  ["Update", (client, namespace) => client.aupdate("p", "llm", [{ text: "t" }], { namespace })],
  ["Clear", (client, namespace) => client.aclear({ namespace })],
  ["BatchLookup", (client, namespace) => client.alookupMany([["p", "llm"]], { namespace })],
  ["BatchUpdate", (client, namespace) => client.aupdateMany([["p", "llm", [{ text: "t" }]]], { namespace })],
  ["Stats", (client) => client.astats()],
  ["blocking Lookup", async (client, namespace) => client.lookup("p", "llm", { namespace })],
];

async function codeOf(call: () => Promise<unknown>): Promise<string> {
  try {
    await call();
    return "OK";
  } catch (error) {
    assert.ok(error instanceof CacheError, String(error));
    return error.code;
  }
}

describe("security", function () {
  this.timeout(30_000);
  const tls = () => ({ ca: certificates().pem("ca"), serverName: "localhost" });

  /** The code of every RPC made by a client with these options, with batching on and off. */
  async function codes(address: string, options: CacheClientOptions, namespace: string): Promise<Record<string, string>> {
    const result: Record<string, string> = {};
    for (const batching of [true, false]) {
      const client = new CacheClient({ address, timeoutMs: 3_000, ...options, batching });
      try {
        for (const [name, call] of CALLS) {
          if (!batching && name.startsWith("blocking")) continue;
          result[`${name}${batching ? "" : " (unary)"}`] = await codeOf(() => call(client, namespace));
        }
      } finally {
        await client.close();
      }
    }
    return result;
  }

  const every = (code: string) => {
    const expected: Record<string, string> = {};
    for (const [name] of CALLS) expected[name] = code;
    for (const [name] of CALLS) if (!name.startsWith("blocking")) expected[`${name} (unary)`] = code;
    return expected;
  };

  describe("a TLS server with tokens", () => {
    let server: ServerProcess;
    before(async () => {
      const authFile = writeAuthFile([
        { name: "team-a", token: TEAM_A, read: ["team-a"], write: ["team-a"], clear: true, stats: true },
        { name: "team-b", token: TEAM_B, read: ["team-b", "shared"], write: ["team-b"] },
      ]);
      const cert = certificates();
      server = await startServerProcess(["--tls-cert", cert.path("server"), "--tls-key", cert.path("server-key"), "--auth-file", authFile]);
    });
    after(() => server.stop());

    it("lets a token do what its rights allow, on every RPC", async () => {
      assert.deepEqual(await codes(server.address, { tls: tls(), token: TEAM_A }, "team-a"), every("OK"));
    });

    it("answers every RPC without a token with UNAUTHENTICATED", async () => {
      assert.deepEqual(await codes(server.address, { tls: tls() }, "team-a"), every("UNAUTHENTICATED"));
    });

    it("answers every RPC with a wrong token with UNAUTHENTICATED", async () => {
      assert.deepEqual(await codes(server.address, { tls: tls(), token: "not-a-token" }, "team-a"), every("UNAUTHENTICATED"));
    });

    it("answers every RPC outside the token's namespaces (or rights) with PERMISSION_DENIED", async () => {
      assert.deepEqual(await codes(server.address, { tls: tls(), token: TEAM_B }, "team-a"), every("PERMISSION_DENIED"));
    });

    it("lets a read-only namespace be read but not written, and says which right is missing", async () => {
      const client = new CacheClient({ address: server.address, tls: tls(), token: TEAM_B, namespace: "shared" });
      try {
        assert.equal(await client.alookup("p", "llm"), null);
        await assert.rejects(client.aupdate("p", "llm", []), {
          code: "PERMISSION_DENIED",
          message: 'Update failed: PERMISSION_DENIED: token "team-b" may not write namespace "shared"',
        });
      } finally {
        await client.close();
      }
    });

    it("refuses a client that speaks plain text to it", async () => {
      assert.deepEqual(await codes(server.address, { token: TEAM_A }, "team-a"), every("UNAVAILABLE"));
    });
  });

  describe("a server requiring client certificates (mutual TLS)", () => {
    let server: ServerProcess;
    before(async () => {
      const cert = certificates();
      server = await startServerProcess(["--tls-cert", cert.path("server"), "--tls-key", cert.path("server-key"), "--tls-client-ca", cert.path("ca")]);
    });
    after(() => server.stop());

    it("serves a client whose certificate its CA signed", async () => {
      const cert = certificates();
      assert.deepEqual(await codes(server.address, { tls: { ...tls(), cert: cert.pem("client"), key: cert.pem("client-key") } }, ""), every("OK"));
    });

    it("refuses a client without a certificate, and one with a certificate from an unknown CA", async () => {
      const cert = certificates();
      assert.deepEqual(await codes(server.address, { tls: tls() }, ""), every("UNAVAILABLE"));
      const rogue = { ...tls(), cert: cert.pem("rogue-client"), key: cert.pem("rogue-client-key") };
      assert.deepEqual(await codes(server.address, { tls: rogue }, ""), every("UNAVAILABLE"));
    });
  });

  describe("listening beyond loopback", () => {
    const serve = (...args: string[]) => runCli(["serve", "--port", "0", ...args], {}, 5_000);

    it("is refused without TLS and authentication, in one line, as a setting (exit code 2)", async () => {
      const run = await serve("--host", "0.0.0.0");
      assert.equal(run.code, 2);
      assert.equal(run.stderr.trim().split("\n").length, 1, run.stderr);
      assert.match(run.stderr, /^llmcache: refusing to listen on 0\.0\.0\.0 without TLS and authentication: give --tls-cert and --tls-key, with --auth-file or --tls-client-ca, or --insecure/);
    });

    it("is refused with TLS but no way to tell callers apart", async () => {
      const cert = certificates();
      const run = await serve("--host", "0.0.0.0", "--tls-cert", cert.path("server"), "--tls-key", cert.path("server-key"));
      assert.equal(run.code, 2);
      assert.match(run.stderr, /^llmcache: refusing to listen on 0\.0\.0\.0 without authentication: /);
    });

    it("is allowed with --insecure", async () => {
      const server = await startServerProcess(["--host", "0.0.0.0", "--insecure"]);
      assert.match(server.address, /^0\.0\.0\.0:\d+$/);
      assert.equal((await server.stop()).code, 0);
    });
  });

  it("reloads the auth file on SIGHUP, and keeps the tokens in force when the new file is bad", async () => {
    const authFile = writeAuthFile([{ name: "a", token: TEAM_A, read: ["*"], write: ["*"] }]);
    const server = await startServerProcess(["--auth-file", authFile]);
    const clientOf = (token: string) => new CacheClient({ address: server.address, token, batching: false });
    const [a, b] = [clientOf(TEAM_A), clientOf(TEAM_B)];
    try {
      assert.equal(await codeOf(() => a.alookup("p", "llm")), "OK");
      assert.equal(await codeOf(() => b.alookup("p", "llm")), "UNAUTHENTICATED");

      writeAuthFile([{ name: "b", token: TEAM_B, read: ["*"], write: ["*"] }], authFile);
      server.child.kill("SIGHUP");
      await waitFor(() => server.stderr().includes('"msg":"auth file reloaded"'));
      assert.equal(await codeOf(() => a.alookup("p", "llm")), "UNAUTHENTICATED", "token a was taken out");
      assert.equal(await codeOf(() => b.alookup("p", "llm")), "OK", "token b was put in");

      writeFileSync(authFile, "tokens: [ {name: broken");
      server.child.kill("SIGHUP");
      await waitFor(() => server.stderr().includes("auth file not reloaded: the tokens in force stay"));
      assert.equal(await codeOf(() => b.alookup("p", "llm")), "OK");
    } finally {
      await a.close();
      await b.close();
      await server.stop();
    }
  });

  it("says on SIGHUP that there is no auth file to reload, when it runs without one", async () => {
    // It logged "auth file reloaded" with 0 tokens, as if every token had been taken out.
    const server = await startServerProcess();
    const client = new CacheClient({ address: server.address, batching: false });
    try {
      server.child.kill("SIGHUP");
      await waitFor(() => server.stderr().includes("no auth file to reload"));
      assert.ok(!server.stderr().includes("auth file reloaded"));
      assert.equal(await codeOf(() => client.alookup("p", "llm")), "OK", "it still serves everyone");
    } finally {
      await client.close();
      await server.stop();
    }
  });

  describe("namespace names in the auth file, compared as text", () => {
    let server: ServerProcess;
    before(async () => {
      const authFile = writeAuthFile([
        { name: "accented", token: TEAM_A, write: ["é"] },
        // "é" as UTF-8 bytes read one by one as latin1: a name that must match only itself.
        { name: "mojibake", token: TEAM_B, write: ["Ã©"] },
        { name: "admin", token: "token-of-admin", write: ["*"] },
      ]);
      server = await startServerProcess(["--auth-file", authFile]);
    });
    after(() => server.stop());

    const clientOf = (token: string, namespace: string) => new CacheClient({ address: server.address, token, namespace, batching: false });

    it("lets a token granted a non-ASCII namespace use it", async () => {
      const client = clientOf(TEAM_A, "é");
      try {
        await client.aupdate("p", "llm", [{ text: "accented" }]);
        assert.deepEqual(await client.alookup("p", "llm"), [{ text: "accented" }]);
      } finally {
        await client.close();
      }
    });

    it("refuses look-alikes: a name whose bytes read as latin1 spell another, and a decomposed accent", async () => {
      const admin = clientOf("token-of-admin", "é");
      await admin.aupdate("secret", "llm", [{ text: "the administrator's" }]);
      await admin.close();
      const mojibake = clientOf(TEAM_B, "é");
      const decomposed = clientOf(TEAM_A, "é");
      try {
        await assert.rejects(mojibake.alookup("secret", "llm"), {
          code: "PERMISSION_DENIED",
          message: 'Lookup failed: PERMISSION_DENIED: token "mojibake" may not read namespace "é"',
        });
        await assert.rejects(mojibake.aupdate("secret", "llm", [{ text: "overwritten" }]), { code: "PERMISSION_DENIED" });
        await assert.rejects(decomposed.aupdate("p", "llm", [{ text: "x" }]), { code: "PERMISSION_DENIED" });
        const ownName = clientOf(TEAM_B, "Ã©");
        await ownName.aupdate("p", "llm", [{ text: "its own" }]);
        await ownName.close();
      } finally {
        await mojibake.close();
        await decomposed.close();
      }
    });
  });

  it("ends a stream opened with a token that a reload then revokes, and honours rights narrowed by a reload", async () => {
    const authFile = writeAuthFile([
      { name: "a", token: TEAM_A, write: ["*"] },
      { name: "b", token: TEAM_B, write: ["*"] },
    ]);
    const server = await startServerProcess(["--auth-file", authFile]);
    const reload = async (tokens: Parameters<typeof writeAuthFile>[0]) => {
      const reloads = server.stderr().split('"msg":"auth file reloaded"').length;
      writeAuthFile(tokens, authFile);
      server.child.kill("SIGHUP");
      await waitFor(() => server.stderr().split('"msg":"auth file reloaded"').length > reloads);
    };
    // Batching on: every call travels on one long-lived Stream opened by the first.
    const [a, b] = [TEAM_A, TEAM_B].map((token) => new CacheClient({ address: server.address, token, namespace: "n" })) as [CacheClient, CacheClient];
    try {
      await a.aupdate("p", "llm", [{ text: "before" }]);
      await b.aupdate("q", "llm", [{ text: "before" }]);

      await reload([{ name: "b", token: TEAM_B, read: ["n"] }]);
      assert.equal(await codeOf(() => a.aupdate("p", "llm", [{ text: "after" }])), "UNAUTHENTICATED", "a's open stream sees the revocation");
      assert.equal(await codeOf(() => a.alookup("p", "llm")), "UNAUTHENTICATED", "and so does the next one");
      assert.equal(await codeOf(() => b.aupdate("q", "llm", [{ text: "after" }])), "PERMISSION_DENIED", "b may only read now");
      assert.deepEqual(await b.alookup("q", "llm"), [{ text: "before" }]);
    } finally {
      await a.close();
      await b.close();
      await server.stop();
    }
  });

  it("refuses a call with two authorization headers, whichever comes first", async () => {
    const authFile = writeAuthFile([{ name: "a", token: TEAM_A, write: ["*"] }]);
    const server = await startServerProcess(["--auth-file", authFile]);
    try {
      const call = (...tokens: string[]) => pythonLookup(server.address, tokens.map((token) => `Bearer ${token}`));
      assert.equal(await call(TEAM_A), "OK");
      assert.equal(await call(TEAM_A, "garbage"), "UNAUTHENTICATED: malformed authorization metadata: expected one \"Bearer <token>\"");
      assert.equal(await call("garbage", TEAM_A), "UNAUTHENTICATED: malformed authorization metadata: expected one \"Bearer <token>\"");
    } finally {
      await server.stop();
    }
  });

  it("refuses to start with an auth file it cannot use, saying why", async () => {
    const authFile = writeAuthFile([{ name: "a", token: TEAM_A }]);
    writeFileSync(authFile, "tokens:\n  - name: a\n    sha256: not-hex\n");
    await assert.rejects(startServerProcess(["--auth-file", authFile]), /tokens\[0\]\.sha256 must be 64 hex digits/);
  });
});

/**
 * A Lookup made by Python's grpcio, which sends every metadata entry it is
 * given (Node's HTTP/2 client refuses to repeat authorization). Resolves
 * with "OK" or "CODE: message".
 */
async function pythonLookup(address: string, authorizations: string[]): Promise<string> {
  const script = [
    "import grpc, json, sys",
    "address, values = sys.argv[1], json.loads(sys.argv[2])",
    "with grpc.insecure_channel(address) as channel:",
    "    lookup = channel.unary_unary('/llmcache.v1.CacheService/Lookup')",
    "    try:",
    "        lookup(b'', metadata=[('authorization', v) for v in values], timeout=5)",
    "        print('OK')",
    "    except grpc.RpcError as error:",
    "        print(f'{error.code().name}: {error.details()}')",
  ].join("\n");
  const { stdout } = await promisify(execFile)(PYTHON, ["-c", script, address, JSON.stringify(authorizations)], { timeout: 20_000 });
  return stdout.trim();
}

async function waitFor(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const giveUp = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > giveUp) throw new Error("timed out waiting");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
