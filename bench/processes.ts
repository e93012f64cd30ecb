import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";

export interface RunningProcess {
  child: ChildProcess;
  address: string;
  port: number;
  stop(): Promise<void>;
}

const CLI = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
const EMPTY_SERVER = fileURLToPath(new URL("./empty-server.js", import.meta.url));

/** `llmcache serve` on a free port; `nodeFlags` go to node before the program. */
export function startLlmcache(args: string[] = [], nodeFlags: string[] = []): Promise<RunningProcess> {
  return startPrinting(process.execPath, [...nodeFlags, CLI, "serve", "--port", "0", ...args], /listening on (\S+)/);
}

/** Has the process collect its garbage, and waits until it has. */
export async function collectGarbage(running: RunningProcess): Promise<void> {
  const done = waitForOutput(running.child, /collected heapUsed \d+[^\n]*\n$/);
  running.child.kill("SIGUSR2");
  await done;
}

/** The same grpc-js server with handlers that answer a fixed reply. */
export function startEmptyServer(): Promise<RunningProcess> {
  return startPrinting(process.execPath, [EMPTY_SERVER], /listening on (\S+)/);
}

export async function startRedis(): Promise<RunningProcess> {
  const found = spawnSync("redis-server", ["--version"]);
  if (found.error) {
    throw new Error("redis-server is not installed: apt-get install redis-server (see the README's performance section)");
  }
  const port = await freePort();
  const child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  await waitForOutput(child, /Ready to accept connections/);
  return wrap(child, `127.0.0.1:${port}`);
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function startPrinting(command: string, args: string[], pattern: RegExp): Promise<RunningProcess> {
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "inherit"] });
  const match = await waitForOutput(child, pattern);
  return wrap(child, match[1]!);
}

function waitForOutput(child: ChildProcess, pattern: RegExp): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let output = "";
    const onData = (chunk: Buffer) => {
      output += chunk;
      const match = pattern.exec(output);
      if (!match) return;
      child.stdout!.off("data", onData);
      child.off("exit", onExit);
      resolve(match);
    };
    const onExit = (code: number | null) => reject(new Error(`${child.spawnfile} exited with ${code} before it was ready: ${output}`));
    child.stdout!.on("data", onData);
    child.once("exit", onExit);
  });
}

/** A started child process that listens at `address`, as the bench keeps it. */
export function wrap(child: ChildProcess, address: string): RunningProcess {
  return {
    child,
    address,
    port: Number(address.split(":").pop()),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      await once(child, "exit");
    },
  };
}

export { COLLECTABLE, residentBytes } from "../test/helpers/memory.js";

/** User and system CPU time of a process so far, in seconds (Linux's /proc). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name, which is in parentheses and may hold spaces; utime and stime are the 14th and 15th.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
}

/** USER_HZ: 100 on every Linux this runs on (getconf CLK_TCK). */
const CLOCK_TICKS_PER_SECOND = 100;
