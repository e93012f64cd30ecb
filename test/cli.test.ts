import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { connect } from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { create, toBinary } from "@bufbuild/protobuf";
import { UpdateRequestSchema } from "../gen/llmcache/v1/cache_pb.js";
import { certificates } from "./helpers/certificates.js";
import { grpcFrame } from "./helpers/raw-grpc.js";
import { CLI, runCli, startServerProcess, type CliRun, type ServerProcess } from "./helpers/server-process.js";
import { closedPort } from "./helpers/stalled-server.js";

type Run = CliRun;
const llmcache = (args: string[], env: NodeJS.ProcessEnv = {}) => runCli(args, env);

function assertOneLineError(run: Run, code: number, message: RegExp): void {
  assert.equal(run.code, code, `exit code; stderr: ${run.stderr}`);
  assert.equal(run.stdout, "");
  const lines = run.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `one line, got: ${run.stderr}`);
  assert.match(lines[0]!, message);
}

describe("the llmcache command", function () {
  this.timeout(30_000);

  describe("serve refuses bad settings with a one-line error and exit code 2", () => {
    const cases: [string, string[], NodeJS.ProcessEnv, RegExp][] = [
      ["--maxsize 0", ["--maxsize", "0"], {}, /^llmcache: invalid --maxsize "0": maxsize must be greater than 0 \(see llmcache --help\)$/],
      ["a negative --maxsize", ["--maxsize=-3"], {}, /^llmcache: invalid --maxsize "-3": maxsize must be greater than 0/],
      ["a --maxsize that is not a number", ["--maxsize", "ten"], {}, /^llmcache: invalid --maxsize "ten": must be an integer/],
      ["a fractional --maxsize", ["--maxsize", "2.5"], {}, /^llmcache: invalid --maxsize "2.5": must be an integer/],
      ["a port above 65535", ["--port", "65536"], {}, /^llmcache: invalid --port "65536": a port is between 0 and 65535/],
      ["a negative port", ["--port=-1"], {}, /^llmcache: invalid --port "-1": a port is between 0 and 65535/],
      ["LLMCACHE_MAXSIZE=0", [], { LLMCACHE_MAXSIZE: "0" }, /^llmcache: invalid LLMCACHE_MAXSIZE "0": maxsize must be greater than 0/],
      ["LLMCACHE_PORT=http", [], { LLMCACHE_PORT: "http" }, /^llmcache: invalid LLMCACHE_PORT "http": must be an integer/],
      ["an unknown flag", ["--max-size", "3"], {}, /^llmcache: Unknown option '--max-size'/],
      ["a flag without its value", ["--port"], {}, /^llmcache: Option '--port <value>' argument missing/],
      ["a stray argument", ["extra"], {}, /^llmcache: Unexpected argument 'extra'/],
      ["a --max-bytes that is not a size", ["--max-bytes", "lots"], {}, /^llmcache: invalid --max-bytes "lots": must be a size such as 4096, 64KiB, 512MiB or 2GB/],
      ["--max-bytes 0", ["--max-bytes", "0MiB"], {}, /^llmcache: invalid --max-bytes "0MiB": must be at least 1 byte/],
      ["LLMCACHE_MAX_BYTES with an unknown unit", [], { LLMCACHE_MAX_BYTES: "5 parsecs" }, /^llmcache: invalid LLMCACHE_MAX_BYTES "5 parsecs": must be a size/],
      ["a --default-ttl without a unit", ["--default-ttl", "60"], {}, /^llmcache: invalid --default-ttl "60": must be a duration with its unit, such as 500ms, 30s, 10m, 1h or 7d/],
      ["an unknown --policy", ["--policy", "lfu"], {}, /^llmcache: invalid --policy "lfu": policy must be "fifo" or "lru", got "lfu"/],
      ["a --namespace-limit without a name", ["--namespace-limit", "maxsize=3"], {}, /^llmcache: invalid --namespace-limit "maxsize=3": expected NAME:maxsize=N,max-bytes=SIZE,default-ttl=DURATION/],
      ["a --namespace-limit with an unknown limit", ["--namespace-limit", "a:size=3"], {}, /^llmcache: invalid --namespace-limit "a:size=3": "size=3" is not maxsize=N, max-bytes=SIZE or default-ttl=DURATION/],
      ["a namespace maxsize of 0", ["--namespace-limit", "a:maxsize=0"], {}, /^llmcache: invalid --namespace-limit a:maxsize "0": maxsize must be greater than 0/],
      ["a bad LLMCACHE_NAMESPACE_LIMITS", [], { LLMCACHE_NAMESPACE_LIMITS: "a:default-ttl=5;b:max-bytes=1KiB" }, /^llmcache: invalid LLMCACHE_NAMESPACE_LIMITS a:default-ttl "5": must be a duration/],
      ["--max-namespaces 0", ["--max-namespaces", "0"], {}, /^llmcache: invalid --max-namespaces "0": must be greater than 0/],
      ["--max-lease-waiters 0", ["--max-lease-waiters", "0"], {}, /^llmcache: invalid --max-lease-waiters "0": must be greater than 0/],
      ["LLMCACHE_MAX_LEASE_WAITERS_PER_PAIR that is not a number", [], { LLMCACHE_MAX_LEASE_WAITERS_PER_PAIR: "lots" }, /^llmcache: invalid LLMCACHE_MAX_LEASE_WAITERS_PER_PAIR "lots": must be an integer/],
      ["an --idle-timeout without a unit", ["--idle-timeout", "300"], {}, /^llmcache: invalid --idle-timeout "300": must be a duration with its unit/],
      ["a --handshake-timeout of 0", ["--handshake-timeout", "0s"], {}, /^llmcache: invalid --handshake-timeout "0s": must be at least 1ms/],
      ["a --max-reply-bytes that is not a size", ["--max-reply-bytes", "big"], {}, /^llmcache: invalid --max-reply-bytes "big": must be a size/],
      ["a --receive-window that is not a size", ["--receive-window", "wide"], {}, /^llmcache: invalid --receive-window "wide": must be a size/],
      ["LLMCACHE_MAX_UNREAD_BYTES of 0", [], { LLMCACHE_MAX_UNREAD_BYTES: "0" }, /^llmcache: invalid LLMCACHE_MAX_UNREAD_BYTES "0": must be at least 1 byte/],
      ["a --max-connections that is not a number", ["--max-connections", "many"], {}, /^llmcache: invalid --max-connections "many": must be an integer/],
      ["a --max-bytes too large to count", ["--max-bytes", "99999999TiB"], {}, /^llmcache: invalid --max-bytes "99999999TiB": must be less than 8 PiB \(2\^53 bytes\) \(see llmcache --help\)$/],
      ["a --default-ttl too long to count", ["--default-ttl", "999999999999d"], {}, /^llmcache: invalid --default-ttl "999999999999d": must be less than 2\^53 ms/],
      ["a --maxsize too large to count", ["--maxsize", "99999999999999999999"], {}, /^llmcache: invalid --maxsize "99999999999999999999": must be at most 9007199254740991 /],
      ["a negative value after a space", ["--maxsize", "-1"], {}, /^llmcache: --maxsize is followed by a value that starts with "-", which is taken for a flag: write --maxsize=VALUE \(see llmcache --help\)$/],
      ["an --auth-file that cannot be read", ["--auth-file", "/nonexistent/auth.yaml"], {}, /^llmcache: --auth-file: cannot read the auth file \/nonexistent\/auth\.yaml: ENOENT/],
      ["an empty --snapshot, which would mean none", ["--snapshot", ""], {}, /^llmcache: invalid --snapshot "": a file's path is needed \(see llmcache --help\)$/],
      ["an empty --auth-file, which would mean no tokens", ["--auth-file="], {}, /^llmcache: invalid --auth-file "": a file's path is needed/],
      ["an LLMCACHE_INSECURE that is neither on nor off", [], { LLMCACHE_INSECURE: "garbage" }, /^llmcache: invalid LLMCACHE_INSECURE "garbage": must be 1, true or yes to turn it on, or 0, false, no or empty/],
      ["an LLMCACHE_AUTH_FILE that is not YAML", [], { LLMCACHE_AUTH_FILE: CLI }, /^llmcache: LLMCACHE_AUTH_FILE: \S+main\.js is not YAML or JSON: /],
      // Node refuses these when the first connection opens, and the process died of it.
      ["a --receive-window beyond HTTP/2's largest", ["--receive-window", "2GiB"], {}, /^llmcache: invalid --receive-window "2GiB": must be at most 2,147,483,647 \(HTTP\/2's largest window\)/],
      ["a --max-concurrent-streams beyond HTTP/2's largest setting", ["--max-concurrent-streams", "4294967296"], {}, /^llmcache: invalid --max-concurrent-streams "4294967296": must be at most 4,294,967,295 \(HTTP\/2's largest setting\)/],
      // Node fires a longer timer at once: every connection was reset, or the snapshot written without pause.
      ["an --idle-timeout beyond Node's longest timer", ["--idle-timeout", "30d"], {}, /^llmcache: invalid --idle-timeout "30d": must be at most 2147483647ms \(24\.8 days, the longest timer Node\.js keeps\)/],
      ["a --handshake-timeout beyond Node's longest timer", ["--handshake-timeout", "25d"], {}, /^llmcache: invalid --handshake-timeout "25d": must be at most 2147483647ms/],
      ["a --snapshot-interval beyond Node's longest timer", ["--snapshot-interval", "30d"], {}, /^llmcache: invalid --snapshot-interval "30d": must be at most 2147483647ms/],
      ["a --shutdown-grace beyond Node's longest timer", ["--shutdown-grace", "30d"], {}, /^llmcache: invalid --shutdown-grace "30d": must be at most 2147483647ms/],
      ["LLMCACHE_KEEPALIVE_TIME beyond Node's longest timer", [], { LLMCACHE_KEEPALIVE_TIME: "30d" }, /^llmcache: invalid LLMCACHE_KEEPALIVE_TIME "30d": must be at most 2147483647ms/],
      // The later one replaced the earlier: a limit was lost without a word.
      ["a namespace's limit given twice in one --namespace-limit", ["--namespace-limit", "a:maxsize=1,maxsize=5"], {}, /^llmcache: invalid --namespace-limit "a:maxsize=1,maxsize=5": namespace "a" has its maxsize twice: give each limit once/],
      ["a namespace's limit given again in another --namespace-limit", ["--namespace-limit", "a:maxsize=1", "--namespace-limit", "a:default-ttl=1h,maxsize=2"], {}, /^llmcache: invalid --namespace-limit "a:default-ttl=1h,maxsize=2": namespace "a" has its maxsize twice/],
      ["a blank LLMCACHE_SNAPSHOT, which would write a file named by spaces", [], { LLMCACHE_SNAPSHOT: " " }, /^llmcache: invalid LLMCACHE_SNAPSHOT " ": a file's path is needed/],
    ];
    for (const [name, args, env, message] of cases) {
      it(`refuses ${name}`, async () => {
        assertOneLineError(await llmcache(["serve", ...args], env), 2, message);
      });
    }

    it("refuses an unknown command", async () => {
      assertOneLineError(await llmcache(["serv"]), 2, /^llmcache: unknown command "serv" \(commands: serve, lookup, update, clear, stats, hash-token\) \(see llmcache --help\)$/);
    });

    it("reports a metrics port already in use with exit code 1, and does not stay listening", async () => {
      const first = await startServerProcess(["--metrics-port", "0"]);
      try {
        const metricsPort = /metrics on port (\d+)/.exec(first.stdout())![1]!;
        const run = await llmcache(["serve", "--port", "0", "--metrics-port", metricsPort]);
        assertOneLineError(run, 1, new RegExp(`^llmcache: cannot serve metrics on 127\\.0\\.0\\.1:${metricsPort}: listen EADDRINUSE`));
      } finally {
        await first.stop();
      }
    });

    it("reports a port already in use with exit code 1", async () => {
      const first = await startServerProcess();
      try {
        const port = first.address.split(":").pop()!;
        assertOneLineError(await llmcache(["serve", "--port", port]), 1, new RegExp(`^llmcache: cannot listen on 127\\.0\\.0\\.1:${port}: `));
      } finally {
        await first.stop();
      }
    });
  });

  it("prints its usage for --help", async () => {
    const run = await llmcache(["--help"]);
    assert.equal(run.code, 0);
    assert.match(run.stdout, /^Usage:\n  llmcache serve \[--host HOST\] \[--port PORT\] \[--store /);
  });

  describe("--help on a command", () => {
    const connection = ["address", "timeout-ms", "token", "tls", "tls-ca", "tls-cert", "tls-key", "tls-server-name"];
    const flagsOf: Record<string, string[]> = {
      serve: [
        "store", "near-cache", "host", "port", "maxsize", "max-bytes", "default-ttl", "policy", "namespace-limit", "tls-cert", "tls-key", "tls-client-ca",
        "insecure", "auth-file", "metrics-port", "log-level", "max-message-bytes", "max-prompt-bytes", "max-llm-string-bytes",
        "max-namespace-bytes", "max-generations", "max-concurrent-streams", "max-reply-bytes", "max-namespaces", "max-lease-waiters", "max-lease-waiters-per-pair", "max-connections",
        "handshake-timeout", "idle-timeout", "max-unread-bytes", "max-unread-bytes-total", "receive-window", "keepalive-time", "keepalive-timeout",
        "snapshot", "snapshot-interval", "shutdown-grace",
      ],
      lookup: ["namespace", "bypass", ...connection],
      update: ["generations", "namespace", "ttl", "never-expires", "no-store", "if-absent", ...connection],
      clear: ["namespace", "all-namespaces", ...connection],
      stats: connection,
      "hash-token": [],
    };
    for (const [command, flags] of Object.entries(flagsOf)) {
      for (const help of ["--help", "-h"]) {
        it(`prints the flags of ${command} for ${help}, one line each, and starts nothing`, async () => {
          // serve would listen on a free port; hash-token's standard input stays open, so reading it would hang.
          const run = await llmcache(command === "serve" ? ["serve", "--port", "0", help] : [command, help]);
          assert.equal(run.code, 0, run.stderr);
          assert.equal(run.stderr, "");
          assert.match(run.stdout, new RegExp(`^Usage: llmcache ${command} `));
          assert.doesNotMatch(run.stdout, /^llmcache listening on/m);
          const listed = [...run.stdout.matchAll(/^  --([a-z-]+)\b.*\S$/gm)].map((match) => match[1]);
          assert.deepEqual(listed, flags);
        });
      }
    }

    it("has every flag of every command in the usage that --help prints", async () => {
      const usage = (await llmcache(["--help"])).stdout;
      for (const [command, flags] of Object.entries(flagsOf)) {
        const missing = flags.filter((flag) => !new RegExp(`--${flag}\\b(?!-)`).test(usage));
        assert.deepEqual(missing, [], `flags of ${command} missing from llmcache --help`);
      }
    });

    it("gives each flag's default where it has one", async () => {
      const serve = (await llmcache(["serve", "--help"])).stdout;
      assert.match(serve, /^  --port PORT +port to listen on; 0 picks a free one \(default: 50051\)$/m);
      assert.match(serve, /^  --max-bytes SIZE +byte budget of the entries, such as 512MiB or 2GB \(default: no limit\)$/m);
      assert.match(serve, /^  --idle-timeout DURATION +.* \(default: 5m\)$/m);
      const lookup = (await llmcache(["lookup", "-h"])).stdout;
      assert.match(lookup, /^  --address HOST:PORT +server to reach.* \(default: 127\.0\.0\.1:50051\)$/m);
      assert.match(lookup, /^  --timeout-ms MS +.* \(default: 5000\)$/m);
    });

    it("prints a command's help for help COMMAND", async () => {
      assert.equal((await llmcache(["help", "clear"])).stdout, (await llmcache(["clear", "--help"])).stdout);
    });
  });

  describe("--version", () => {
    const version = (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;

    for (const flag of ["--version", "-v", "version"]) {
      it(`prints the package's version for ${flag}`, async () => {
        assert.deepEqual(await llmcache([flag]), { code: 0, stdout: `${version}\n`, stderr: "" });
      });
    }

    it("reads the version of the package it is installed from", async () => {
      // An installed package: package.json three levels above dist/src/cli/main.js, not this repository's.
      const dist = fileURLToPath(new URL("../", import.meta.url));
      const root = mkdtempSync(join(tmpdir(), "llmcache-installed-"));
      try {
        const pkg = join(root, "node_modules", "llmcache");
        mkdirSync(join(pkg, "dist"), { recursive: true });
        for (const dir of ["src", "gen"]) cpSync(join(dist, dir), join(pkg, "dist", dir), { recursive: true });
        writeFileSync(join(pkg, "package.json"), JSON.stringify({ name: "llmcache-grpc", version: "9.8.7-installed", type: "module" }));
        symlinkSync(fileURLToPath(new URL("../../node_modules", import.meta.url)), join(pkg, "node_modules"));
        const { stdout } = await promisify(execFile)(process.execPath, [join(pkg, "dist", "src", "cli", "main.js"), "--version"]);
        assert.equal(stdout, "9.8.7-installed\n");
      } finally {
        rmSync(root, { recursive: true, force: true });
      }
    });
  });

  describe("TLS files that hold no certificate or key are refused before use, naming their flag, with exit code 2", () => {
    // Any file that is not PEM: the CLI's own code.
    const notPem = CLI;
    const cases: [string, () => string[], NodeJS.ProcessEnv, RegExp][] = [
      ["a --tls-cert", () => ["serve", "--tls-cert", notPem, "--tls-key", certificates().path("server-key")], {}, /^llmcache: --tls-cert \S+main\.js holds no PEM certificate \(see llmcache --help\)$/],
      ["a --tls-key", () => ["serve", "--tls-cert", certificates().path("server"), "--tls-key", notPem], {}, /^llmcache: --tls-key \S+main\.js holds no PEM private key/],
      ["a --tls-key of another certificate", () => ["serve", "--tls-cert", certificates().path("server"), "--tls-key", certificates().path("client-key")], {}, /^llmcache: --tls-key \S+client-key\.pem is not the key of --tls-cert \S+server\.pem /],
      ["a --tls-client-ca", () => ["serve", "--tls-cert", certificates().path("server"), "--tls-key", certificates().path("server-key"), "--tls-client-ca", notPem], {}, /^llmcache: --tls-client-ca \S+main\.js holds no PEM certificate/],
      ["an LLMCACHE_TLS_CERT", () => ["serve", "--tls-key", certificates().path("server-key")], { LLMCACHE_TLS_CERT: notPem }, /^llmcache: LLMCACHE_TLS_CERT \S+main\.js holds no PEM certificate/],
      ["a client command's --tls-ca", () => ["lookup", "--tls-ca", notPem, "p", "llm"], {}, /^llmcache: --tls-ca \S+main\.js holds no PEM certificate/],
    ];
    for (const [name, args, env, message] of cases) {
      it(`refuses ${name} that is not one`, async () => {
        assertOneLineError(await llmcache(args(), env), 2, message);
      });
    }
  });

  it("refuses a client command's --tls-cert without --tls-key as a setting (exit code 2), before it calls", async () => {
    const run = await llmcache(["lookup", "--tls-cert", certificates().path("client"), "p", "llm"]);
    assertOneLineError(run, 2, /^llmcache: give --tls-cert and --tls-key together \(see llmcache --help\)$/);
  });

  it("refuses a client command's --timeout-ms beyond 24 days, with exit code 2", async () => {
    const run = await llmcache(["lookup", "--timeout-ms", "99999999999999", "p", "llm"]);
    assertOneLineError(run, 2, /^llmcache: invalid --timeout-ms "99999999999999": must be at most 2073600000 \(24 days\)/);
  });

  it("refuses an LLMCACHE_TLS that is neither on nor off, rather than talk in plain text", async () => {
    assertOneLineError(await llmcache(["stats"], { LLMCACHE_TLS: "on" }), 2, /^llmcache: invalid LLMCACHE_TLS "on": must be 1, true or yes to turn it on/);
  });

  it("refuses a client command's token with a space, with exit code 2, without printing it", async () => {
    const run = await llmcache(["stats", "--token", "two words"]);
    assertOneLineError(run, 2, /^llmcache: invalid --token: a token is one word of visible ASCII characters, without spaces \(not shown here\) \(see llmcache --help\)$/);
    assert.doesNotMatch(run.stderr, /two words/);
  });

  it("refuses a client command's token that a header cannot carry (an accent), rather than fail every call", async () => {
    const run = await llmcache(["stats", "--token", "tok\u00e9n"]);
    assertOneLineError(run, 2, /^llmcache: invalid --token: a token is one word of visible ASCII characters, without spaces \(not shown here\)/);
    assert.doesNotMatch(run.stderr, /tok\u00e9n/);
  });

  describe("client commands refuse an address without a usable port, with exit code 2", () => {
    const cases: [string, string[], NodeJS.ProcessEnv, RegExp][] = [
      ["--address localhost", ["--address", "localhost"], {}, /^llmcache: invalid --address "localhost": a port is needed, such as localhost:50051 \(see llmcache --help\)$/],
      ["LLMCACHE_ADDRESS=localhost", [], { LLMCACHE_ADDRESS: "localhost" }, /^llmcache: invalid LLMCACHE_ADDRESS "localhost": a port is needed, such as localhost:50051 /],
      ["a bracketed IPv6 address without a port", ["--address", "[::1]"], {}, /^llmcache: invalid --address "\[::1\]": a port is needed, such as \[::1\]:50051 /],
      ["an IPv6 address without brackets", ["--address", "::1"], {}, /^llmcache: invalid --address "::1": an IPv6 address goes in brackets, such as \[::1\]:50051 /],
      ["port 0", ["--address", "localhost:0"], {}, /^llmcache: invalid --address "localhost:0": a port is between 1 and 65535 /],
      ["a port above 65535", ["--address", "127.0.0.1:65536"], {}, /^llmcache: invalid --address "127\.0\.0\.1:65536": a port is between 1 and 65535 /],
      ["a port that is not a number", ["--address", "localhost:http"], {}, /^llmcache: invalid --address "localhost:http": a port is between 1 and 65535 /],
      ["an empty item among several", ["--address", "127.0.0.1:50051,"], {}, /^llmcache: invalid --address "127\.0\.0\.1:50051,": an address is needed between the commas/],
      ["an item without a port among several", ["--address", "127.0.0.1:50051,localhost"], {}, /^llmcache: invalid --address "127\.0\.0\.1:50051,localhost": a port is needed, such as localhost:50051 /],
    ];
    for (const [name, args, env, message] of cases) {
      it(`refuses ${name}`, async () => {
        assertOneLineError(await llmcache(["lookup", ...args, "p", "llm"], env), 2, message);
      });
    }
  });

  describe("errors of the client commands are one line", () => {
    it("reports a refused connection in one line, without grpc-js's resolution note", async () => {
      const port = await closedPort();
      assertOneLineError(
        await llmcache(["lookup", "--address", `127.0.0.1:${port}`, "p", "llm"]),
        1,
        new RegExp(`^llmcache: Lookup failed: UNAVAILABLE: No connection established\\. Last error: .*ECONNREFUSED 127\\.0\\.0\\.1:${port}$`),
      );
    });

    it("reports a name that does not resolve in one line", async () => {
      assertOneLineError(
        await llmcache(["stats", "--address", "no-such-host.invalid:1"]),
        1,
        /^llmcache: Stats failed: UNAVAILABLE: Name resolution failed for target dns:no-such-host\.invalid:1$/,
      );
    });

    describe("over TLS", () => {
      let server: ServerProcess;
      before(async () => {
        const tls = certificates();
        server = await startServerProcess(["--tls-cert", tls.path("server"), "--tls-key", tls.path("server-key"), "--tls-client-ca", tls.path("ca")]);
      });
      after(() => server.stop());

      it("reaches a server at an IP address with nothing on stderr (no Node warning about the TLS server name)", async () => {
        const tls = certificates();
        const at = ["--address", server.address, "--tls-ca", tls.path("ca"), "--tls-cert", tls.path("client"), "--tls-key", tls.path("client-key")];
        assert.deepEqual(await llmcache(["lookup", ...at, "p", "llm"]), { code: 0, stdout: "null\n", stderr: "" });
        assert.doesNotMatch(server.stderr(), /\(node:\d+\)|Warning/);
      });

      it("reports a TLS failure in one line, though OpenSSL's message has a line break", async () => {
        const run = await llmcache(["lookup", "--address", server.address, "--tls-ca", certificates().path("ca"), "p", "llm"]);
        assertOneLineError(run, 1, /^llmcache: Lookup failed: UNAVAILABLE: .*certificate required/);
      });
    });
  });

  describe("serve", () => {
    it("listens on the port and host it is given, and prints where", async () => {
      const port = await closedPort();
      const server = await startServerProcess(["--host", "127.0.0.1", "--port", String(port)]);
      try {
        assert.equal(server.address, `127.0.0.1:${port}`);
        assert.equal((await llmcache(["lookup", "--address", server.address, "p", "llm"])).stdout, "null\n");
      } finally {
        await server.stop();
      }
    });

    it("asks for no V8 flags to keep to a byte budget", async () => {
      const server = await startServerProcess(["--max-bytes", "64MiB"], { NODE_OPTIONS: "" });
      try {
        assert.doesNotMatch(server.stderr(), /max-old-space-size|"level":40/);
      } finally {
        await server.stop();
      }
    });

    it("takes per-namespace limits from LLMCACHE_NAMESPACE_LIMITS", async () => {
      const server = await startServerProcess([], { LLMCACHE_NAMESPACE_LIMITS: "tiny:maxsize=1;other:max-bytes=1MiB,default-ttl=1h" });
      try {
        const at = ["--address", server.address, "--namespace", "tiny"];
        await llmcache(["update", ...at, "a", "llm", "a"]);
        await llmcache(["update", ...at, "b", "llm", "b"]);
        assert.equal((await llmcache(["lookup", ...at, "a", "llm"])).stdout, "null\n", "tiny holds one entry");
        assert.equal((await llmcache(["lookup", ...at, "b", "llm"])).stdout, '[{"text":"b"}]\n');
      } finally {
        await server.stop();
      }
    });

    it("takes its settings from LLMCACHE_PORT and LLMCACHE_MAXSIZE, and flags win over them", async () => {
      const port = await closedPort();
      const child = spawn(process.execPath, [CLI, "serve"], {
        env: { ...process.env, LLMCACHE_HOST: "127.0.0.1", LLMCACHE_PORT: String(port), LLMCACHE_MAXSIZE: "1" },
      });
      const [line] = (await once(child.stdout, "data")) as [Buffer];
      try {
        assert.equal(line.toString(), `llmcache listening on 127.0.0.1:${port}\n`);
        const address = `127.0.0.1:${port}`;
        await llmcache(["update", "--address", address, "first", "llm", "1"]);
        await llmcache(["update", "--address", address, "second", "llm", "2"]);
        assert.equal((await llmcache(["lookup", "--address", address, "first", "llm"])).stdout, "null\n", "maxsize 1 evicted it");
      } finally {
        child.kill("SIGTERM");
        await once(child, "exit");
      }
      const flagWins = await startServerProcess(["--maxsize", "2"], { LLMCACHE_MAXSIZE: "0" });
      await flagWins.stop();
    });

    for (const signal of ["SIGTERM", "SIGINT"] as const) {
      it(`exits 0 on ${signal}`, async () => {
        const server = await startServerProcess();
        const { code } = await server.stop(signal);
        assert.equal(code, 0);
        assert.match(server.stderr(), new RegExp(`${signal} received, finishing calls in flight`));
      });
    }

    it("finishes a call in flight when SIGTERM arrives, then exits 0", async () => {
      const server = await startServerProcess();
      const session = connect(`http://${server.address}`);
      try {
        const stream = session.request({
          ":method": "POST",
          ":path": "/llmcache.v1.CacheService/Update",
          "content-type": "application/grpc",
          te: "trailers",
        });
        const request = toBinary(UpdateRequestSchema, create(UpdateRequestSchema, { prompt: "p", llmString: "llm", generations: [{ text: "late" }] }));
        const frame = grpcFrame(request);
        const trailers = once(stream, "trailers");
        stream.resume();
        stream.write(frame.subarray(0, 3)); // the call has begun, its message not yet complete
        // Frames on one connection are handled in order: once a later call on
        // it is answered, the server has certainly begun the first.
        const probe = session.request({ ":method": "POST", ":path": "/llmcache.v1.CacheService/Clear", "content-type": "application/grpc", te: "trailers" });
        probe.resume();
        probe.end(grpcFrame(Buffer.alloc(0)));
        await once(probe, "end");

        server.child.kill("SIGTERM");
        while (!server.stderr().includes("SIGTERM received")) await new Promise((resolve) => setTimeout(resolve, 20));
        stream.end(frame.subarray(3));

        const [fields] = (await trailers) as [Record<string, string>];
        assert.equal(fields["grpc-status"], "0", `the call in flight completed: ${fields["grpc-message"]}`);
        const { code } = await server.exited();
        assert.equal(code, 0);
      } finally {
        session.destroy();
        await server.stop("SIGKILL");
      }
    });
  });

  describe("lookup, update and clear", () => {
    let server: ServerProcess;
    before(async () => {
      server = await startServerProcess();
    });
    after(() => server.stop());

    it("reaches the replica that answers when given several, one of them down", async () => {
      const down = `127.0.0.1:${await closedPort()}`;
      await llmcache(["update", "--address", server.address, "several", "model=x", "Paris"]);
      const hit = await llmcache(["lookup", "--address", `${down},${server.address}`, "several", "model=x"]);
      assert.equal(hit.code, 0, hit.stderr);
      assert.deepEqual(JSON.parse(hit.stdout), [{ text: "Paris" }]);
    });

    it("stores texts with update, prints them as JSON with lookup, and null on a miss", async () => {
      const update = await llmcache(["update", "--address", server.address, "capital of France?", "model=x", "Paris", "Lyon"]);
      assert.deepEqual(update, { code: 0, stdout: "", stderr: "" });
      const hit = await llmcache(["lookup", "--address", server.address, "capital of France?", "model=x"]);
      assert.deepEqual(JSON.parse(hit.stdout), [{ text: "Paris" }, { text: "Lyon" }]);
      const miss = await llmcache(["lookup", "--address", server.address, "capital of France?", "model=y"]);
      assert.equal(miss.stdout, "null\n");
    });

    it("stores full generations given as JSON, and an empty list as a hit", async () => {
      const generations = [{ text: "hi", generationInfo: { finish_reason: "stop" }, message: { type: "ai", content: "hi", tool_calls: [], invalid_tool_calls: [] } }];
      await llmcache(["update", "--address", server.address, "--generations", JSON.stringify(generations), "p", "llm"]);
      assert.deepEqual(JSON.parse((await llmcache(["lookup", "--address", server.address, "p", "llm"])).stdout), generations);
      await llmcache(["update", "--address", server.address, "empty", "llm"]);
      assert.equal((await llmcache(["lookup", "--address", server.address, "empty", "llm"])).stdout, "[]\n");
    });

    it("reaches the server named by LLMCACHE_ADDRESS", async () => {
      await llmcache(["update", "env", "llm", "via env"], { LLMCACHE_ADDRESS: server.address });
      assert.equal((await llmcache(["lookup", "env", "llm"], { LLMCACHE_ADDRESS: server.address })).stdout, '[{"text":"via env"}]\n');
    });

    it("clears the cache", async () => {
      await llmcache(["update", "--address", server.address, "x", "llm", "x"]);
      assert.equal((await llmcache(["clear", "--address", server.address])).code, 0);
      assert.equal((await llmcache(["lookup", "--address", server.address, "x", "llm"])).stdout, "null\n");
    });

    it("stores only if absent with --if-absent, printing whether it did", async () => {
      const args = ["update", "--address", server.address, "--namespace", "cli-if-absent", "--if-absent", "p", "llm"];
      assert.equal((await llmcache([...args, "first"])).stdout, "true\n");
      assert.equal((await llmcache([...args, "second"])).stdout, "false\n");
      const lookup = await llmcache(["lookup", "--address", server.address, "--namespace", "cli-if-absent", "p", "llm"]);
      assert.equal(lookup.stdout, '[{"text":"first"}]\n');
    });

    it("looks up and clears within a namespace, bypasses on request, and clears all namespaces", async () => {
      const at = ["--address", server.address];
      await llmcache(["update", ...at, "--namespace", "ns1", "k", "llm", "one"]);
      await llmcache(["update", ...at, "--namespace", "ns2", "k", "llm", "two"]);
      assert.equal((await llmcache(["lookup", ...at, "--namespace", "ns1", "k", "llm"])).stdout, '[{"text":"one"}]\n');
      assert.equal((await llmcache(["lookup", ...at, "--namespace", "ns1", "--bypass", "k", "llm"])).stdout, "null\n");
      await llmcache(["clear", ...at, "--namespace", "ns1"]);
      assert.equal((await llmcache(["lookup", ...at, "--namespace", "ns1", "k", "llm"])).stdout, "null\n");
      assert.equal((await llmcache(["lookup", ...at, "--namespace", "ns2", "k", "llm"])).stdout, '[{"text":"two"}]\n');
      await llmcache(["clear", ...at, "--all-namespaces"]);
      assert.equal((await llmcache(["lookup", ...at, "--namespace", "ns2", "k", "llm"])).stdout, "null\n");
    });

    it("expires an entry stored with --ttl", async () => {
      await llmcache(["update", "--address", server.address, "--ttl", "50ms", "brief", "llm", "soon gone"]);
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal((await llmcache(["lookup", "--address", server.address, "brief", "llm"])).stdout, "null\n");
    });

    it("prints the statistics as JSON", async () => {
      const at = ["--address", server.address];
      await llmcache(["update", ...at, "--namespace", "counted", "k", "llm", "v"]);
      await llmcache(["lookup", ...at, "--namespace", "counted", "k", "llm"]);
      await llmcache(["lookup", ...at, "--namespace", "counted", "missing", "llm"]);
      const run = await llmcache(["stats", ...at]);
      assert.equal(run.code, 0, run.stderr);
      const { total, namespaces } = JSON.parse(run.stdout);
      assert.deepEqual(
        { entries: namespaces.counted.entries, hits: namespaces.counted.hits, misses: namespaces.counted.misses, hitRatio: namespaces.counted.hitRatio },
        { entries: 1, hits: 1, misses: 1, hitRatio: 0.5 },
      );
      assert.ok(total.hits >= 1 && total.entries >= 1);
    });

    it("refuses a wrong number of arguments and bad JSON with exit code 2", async () => {
      assertOneLineError(await llmcache(["lookup", "--address", server.address, "only prompt"]), 2, /^llmcache: lookup takes PROMPT and LLM_STRING, got 1 argument \(see/);
      assertOneLineError(await llmcache(["update", "--address", server.address, "p", "llm", "--generations", "[{"]), 2, /^llmcache: --generations is not valid JSON: /);
      assertOneLineError(await llmcache(["update", "--address", server.address, "p", "llm", "text", "--generations", "[]"]), 2, /^llmcache: give either TEXT arguments or --generations, not both/);
      assertOneLineError(await llmcache(["update", "--address", server.address, "--ttl", "1s", "--never-expires", "p", "llm"]), 2, /^llmcache: give either --ttl or --never-expires, not both/);
      assertOneLineError(await llmcache(["update", "--address", server.address, "--ttl", "soon", "p", "llm"]), 2, /^llmcache: invalid --ttl "soon": must be a duration/);
      assertOneLineError(await llmcache(["clear", "--address", server.address, "--namespace", "a", "--all-namespaces"]), 2, /^llmcache: give either --namespace or --all-namespaces, not both/);
    });

    describe("refuses --generations that are not a list of generations with exit code 2", () => {
      const cases: [string, string, RegExp][] = [
        ["an object", '{"text":1}', /^llmcache: --generations must be an array, got an object \(see llmcache --help\)$/],
        ["a text that is not a string", '[{"text": 3}]', /^llmcache: --generations\[0\]\.text must be a string, got number 3 \(see llmcache --help\)$/],
        ["an unknown field", '[{"txt":"x"}]', /^llmcache: --generations\[0\]\.txt is not a field of a generation \(text, generationInfo, message\)/],
        ["both generation_info and generationInfo", '[{"text":"x"},{"text":"y","generation_info":{},"generationInfo":{}}]', /^llmcache: --generations\[1\] has both generation_info and generationInfo: give one /],
        ["a generation_info that is not an object", '[{"text":"x","generation_info":[1]}]', /^llmcache: --generations\[0\]\.generation_info must be a JSON object, got an array /],
        ["JSON that V8 quotes, line break and all", '[{"text":"x"},\nx]', /^llmcache: --generations is not valid JSON: Unexpected token 'x', "\[\{"text":"x"\}, x\]" is not valid JSON /],
      ];
      for (const [name, json, message] of cases) {
        it(`refuses ${name}`, async () => {
          assertOneLineError(await llmcache(["update", "--address", server.address, "p", "llm", "--generations", json]), 2, message);
        });
      }
    });

    it("takes Python's generation_info in --generations, as generationInfo", async () => {
      const at = ["--address", server.address, "--namespace", "cli-snake-case"];
      const generations = [{ text: "hi", generation_info: { finish_reason: "stop" } }, { text: "yo", generationInfo: { n: 1 } }];
      assert.deepEqual(await llmcache(["update", ...at, "--generations", JSON.stringify(generations), "p", "llm"]), { code: 0, stdout: "", stderr: "" });
      const lookup = await llmcache(["lookup", ...at, "p", "llm"]);
      assert.deepEqual(JSON.parse(lookup.stdout), [{ text: "hi", generationInfo: { finish_reason: "stop" } }, { text: "yo", generationInfo: { n: 1 } }]);
    });

    it("reports an unreachable server with exit code 1", async () => {
      const run = await llmcache(["lookup", "--address", `127.0.0.1:${await closedPort()}`, "p", "llm"]);
      assertOneLineError(run, 1, /^llmcache: Lookup failed: UNAVAILABLE: /);
    });
  });
});
