import { execFile, spawnSync } from "node:child_process";
import { accessSync, constants, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const INSTALL_HINT = "redis-server is not installed; the Redis tests need it: sudo apt-get install redis-server";

/**
 * The repository's root: the nearest folder above with a package.json, since
 * this file runs compiled from dist/test/helpers/, not from test/helpers/.
 */
function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
  return dir;
}

function onPath(command: string): boolean {
  return (process.env.PATH ?? "").split(delimiter).some((dir) => {
    try {
      accessSync(join(dir, command), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** Rejects, with the way to fix it, rather than letting a test time out on a missing binary. */
function requireRedis(): void {
  if (!onPath("redis-server") || !onPath("redis-cli")) throw new Error(INSTALL_HINT);
}

// What is still to be stopped when the process exits. Redis runs daemonised,
// so nothing else would end it, and a leftover would hold its port.
const clusterDirs = new Set<string>();
const privateServers = new Set<{ dir: string; pid(): number | undefined }>();
let cleanupRegistered = false;

function registerCleanup(): void {
  if (cleanupRegistered) return;
  cleanupRegistered = true;
  // "exit" listeners must be synchronous, hence spawnSync and process.kill.
  process.on("exit", () => {
    for (const dir of clusterDirs) {
      spawnSync("bash", [join(repoRoot(), "scripts", "redis-down.sh"), dir], { stdio: "ignore" });
      rmSync(dir, { recursive: true, force: true });
    }
    for (const server of privateServers) {
      const pid = server.pid();
      if (pid !== undefined && isRunning(pid)) process.kill(pid, "SIGKILL");
      rmSync(server.dir, { recursive: true, force: true });
    }
  });
}

let shared: Promise<{ single: string; cluster: string }> | undefined;

/**
 * URLs of a plain Redis (redis://host:port) and of a Redis Cluster of three
 * primaries and three replicas (redis-cluster://host:port,host:port,...).
 * CI starts them once with scripts/redis-up.sh and passes them in
 * LLMCACHE_TEST_REDIS and LLMCACHE_TEST_REDIS_CLUSTER; without those, the
 * first call starts them for this process and they stop when it exits.
 * Tests share them, so each test must use keys of its own.
 */
export async function redisServers(): Promise<{ single: string; cluster: string }> {
  const single = process.env.LLMCACHE_TEST_REDIS;
  const cluster = process.env.LLMCACHE_TEST_REDIS_CLUSTER;
  if (single && cluster) return { single, cluster };
  shared ??= startShared();
  return shared;
}

async function startShared(): Promise<{ single: string; cluster: string }> {
  const { single, cluster } = await runRedisUp({});
  return { single, cluster };
}

/**
 * Runs scripts/redis-up.sh in a folder of its own, with `env` added to its
 * environment, and gives the URLs it wrote and that folder.
 */
async function runRedisUp(env: NodeJS.ProcessEnv): Promise<{ single: string; cluster: string; dir: string }> {
  requireRedis();
  const dir = mkdtempSync(join(tmpdir(), "llmcache-redis-"));
  // Before the script runs: should it fail half way it stops its servers
  // itself, but the folder is still ours to remove.
  clusterDirs.add(dir);
  registerCleanup();
  const script = join(repoRoot(), "scripts", "redis-up.sh");
  await new Promise<void>((resolve, reject) => {
    execFile("bash", [script, dir], { timeout: 60_000, env: { ...process.env, ...env } }, (error, _stdout, stderr) => {
      if (error) reject(new Error(`scripts/redis-up.sh failed: ${stderr.trim() || error.message}`));
      else resolve();
    });
  });
  const urls = new Map(
    readFileSync(join(dir, "env"), "utf8")
      .split("\n")
      .filter((line) => line.includes("="))
      .map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)]),
  );
  const single = urls.get("LLMCACHE_TEST_REDIS");
  const cluster = urls.get("LLMCACHE_TEST_REDIS_CLUSTER");
  if (!single || !cluster) throw new Error(`scripts/redis-up.sh wrote no URLs to ${join(dir, "env")}`);
  return { single, cluster, dir };
}

/** A Redis Cluster of a test's own, whose primaries it may kill. */
export interface PrivateCluster {
  /** redis-cluster://host:port,... */
  readonly url: string;
  /** The ports of the nodes that are primaries now. */
  primaryPorts(): Promise<number[]>;
  /** The port of the replica of the primary on `port` (its first, should it have several). */
  replicaOf(port: number): Promise<number>;
  /** The node on `port`'s answer to a command, as redis-cli prints it; "" if it does not answer. */
  send(port: number, ...command: string[]): Promise<string>;
  /** SIGKILL to the node on `port`, as in a crash. */
  kill(port: number): void;
  /** Whether every node still running says the cluster is whole (cluster_state:ok). */
  healthy(): Promise<boolean>;
  /** Stops every node and removes the folder. */
  stop(): Promise<void>;
}

/**
 * Starts a three-primary, three-replica Cluster for one test, whose nodes
 * give up on a silent peer after `nodeTimeoutMs`: a replica takes over a
 * killed primary within a few of those.
 */
export async function startRedisCluster(nodeTimeoutMs = 1_000): Promise<PrivateCluster> {
  const { cluster, dir } = await runRedisUp({ LLMCACHE_REDIS_CLUSTER_NODE_TIMEOUT_MS: String(nodeTimeoutMs) });
  const ports = cluster.replace("redis-cluster://", "").split(",").map((node) => Number(node.slice(node.lastIndexOf(":") + 1)));
  const pidOf = (port: number) => {
    const n = ports.indexOf(port) + 1;
    return Number(readFileSync(join(dir, `cluster-${n}`, "redis.pid"), "utf8").trim());
  };
  const alive = () => ports.filter((port) => isRunning(pidOf(port)));
  return {
    url: cluster,
    async primaryPorts() {
      const roles = await Promise.all(alive().map(async (port) => [port, await redisCli(port, "ROLE")] as const));
      return roles.filter(([, role]) => role.startsWith("master")).map(([port]) => port);
    },
    async replicaOf(port) {
      // ROLE on a primary: "master", its offset, then each replica's ip, port and offset.
      const replica = Number((await redisCli(port, "ROLE")).split("\n")[3]);
      if (!Number.isInteger(replica) || replica <= 0) throw new Error(`the node on ${port} has no replica`);
      return replica;
    },
    send: redisCli,
    kill(port) {
      process.kill(pidOf(port), "SIGKILL");
    },
    async healthy() {
      const states = await Promise.all(alive().map((port) => redisCli(port, "CLUSTER", "INFO")));
      return states.every((state) => state.startsWith("cluster_state:ok"));
    },
    async stop() {
      await new Promise((resolve) => execFile("bash", [join(repoRoot(), "scripts", "redis-down.sh"), dir], resolve));
      clusterDirs.delete(dir);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** redis-cli's answer to one command, "" if the node does not answer. */
function redisCli(port: number, ...command: string[]): Promise<string> {
  return new Promise((resolve) => {
    execFile("redis-cli", ["-p", String(port), ...command], { timeout: 2_000 }, (error, stdout) => resolve(error ? "" : stdout));
  });
}

/** A Redis of a test's own, to stop, kill and bring back. */
export interface PrivateRedis {
  /** redis://127.0.0.1:port */
  readonly url: string;
  readonly port: number;
  /** SHUTDOWN NOSAVE, and waits for the process to be gone. */
  stop(): Promise<void>;
  /** SIGKILL: no goodbye to its clients, as in a crash. */
  kill(): void;
  /** SIGSTOP: connections stay open and nothing is answered, as in a hung host. resume() sends SIGCONT. */
  pause(): void;
  resume(): void;
  /** Starts it again, empty, on the same port, and waits until it answers PING. */
  restart(): Promise<void>;
}

/**
 * Starts a plain Redis on a free loopback port in a folder of its own, for
 * tests that stop or kill it, which they must not do to the shared ones.
 */
export async function startRedis(): Promise<PrivateRedis> {
  requireRedis();
  const dir = mkdtempSync(join(tmpdir(), "llmcache-redis-"));
  const port = await freePort();
  let pid: number | undefined;
  privateServers.add({ dir, pid: () => pid });
  registerCleanup();
  pid = await launch(dir, port);
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    async stop() {
      if (pid === undefined || !isRunning(pid)) return;
      // Redis closes the connection without a reply; a reset is as good.
      await command(port, "SHUTDOWN NOSAVE").catch(() => "");
      await waitUntilGone(pid);
    },
    kill() {
      if (pid !== undefined && isRunning(pid)) process.kill(pid, "SIGKILL");
    },
    pause() {
      if (pid !== undefined) process.kill(pid, "SIGSTOP");
    },
    resume() {
      if (pid !== undefined) process.kill(pid, "SIGCONT");
    },
    async restart() {
      // After kill() the process may take a moment to die and free the port.
      if (pid !== undefined) await waitUntilGone(pid);
      pid = await launch(dir, port);
    },
  };
}

/** A port the kernel just gave out, so no one else is listening on it. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once("error", reject).listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Starts redis-server daemonised in dir and gives its pid once it answers PING. */
async function launch(dir: string, port: number): Promise<number> {
  const pidfile = join(dir, "redis.pid");
  const logfile = join(dir, "redis.log");
  // A killed Redis leaves its pidfile; a stale one would hand back a dead pid.
  rmSync(pidfile, { force: true });
  // DEBUG from loopback lets a test turn off active expiry, to see what a near cache does with a key Redis has not yet reclaimed.
  const args = ["--port", `${port}`, "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "no", "--enable-debug-command", "local"];
  args.push("--daemonize", "yes", "--pidfile", pidfile, "--logfile", logfile);
  await new Promise<void>((resolve, reject) => {
    execFile("redis-server", args, (error) => (error ? reject(new Error(`redis-server did not start: ${error.message}`)) : resolve()));
  });
  const deadline = Date.now() + 10_000;
  for (;;) {
    // The pidfile is written once it listens, and PING tells it is this one
    // answering on the port.
    if (existsSync(pidfile) && (await command(port, "PING").catch(() => "")) === "+PONG") {
      return Number(readFileSync(pidfile, "utf8").trim());
    }
    if (Date.now() > deadline) {
      const log = existsSync(logfile) ? readFileSync(logfile, "utf8").trim().split("\n").slice(-3).join(" | ") : "no log";
      throw new Error(`redis-server on port ${port} did not answer PING within 10 s: ${log}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Sends an inline command and gives back the first line of the reply, or "" if the server closed the connection without one. */
function command(port: number, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    let reply = "";
    socket.setTimeout(2_000, () => socket.destroy(new Error(`no reply from port ${port} to ${line}`)));
    socket.on("connect", () => socket.write(`${line}\r\n`));
    socket.on("data", (chunk) => {
      reply += chunk;
      if (reply.includes("\r\n")) socket.end();
    });
    socket.on("error", reject);
    socket.on("close", () => resolve(reply.split("\r\n")[0] ?? ""));
  });
}

/**
 * Whether the redis-server runs. A zombie does not: where nothing reaps
 * orphans (some containers) a daemonised Redis that exited stays in the
 * table. A pid now held by another program does not either, so that kill()
 * never hits a stranger.
 */
function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return stat.includes("(redis-server)") && state !== "Z" && state !== "X";
  } catch {
    // No /proc (not Linux): ask the kernel whether the pid exists.
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  }
}

async function waitUntilGone(pid: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (isRunning(pid)) {
    if (Date.now() > deadline) throw new Error(`redis-server (pid ${pid}) still runs after 10 s`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
