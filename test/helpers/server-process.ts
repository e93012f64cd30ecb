import { execFile, spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

export const CLI = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));

/** How a run of the llmcache command ended, and what it printed. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `llmcache ...args` to its end (at most `timeoutMs`) and says how it ended. */
export async function runCli(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 15_000): Promise<CliRun> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, timeout: timeoutMs });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ServerProcess {
  readonly child: ChildProcess;
  /** host:port the server printed as listening on. */
  readonly address: string;
  /** Everything the server wrote to stderr so far. */
  stderr(): string;
  /** Everything the server wrote to stdout so far. */
  stdout(): string;
  /** Sends the signal, unless the process has exited already, and waits for it to exit. */
  stop(signal?: NodeJS.Signals): Promise<Exit>;
  /** Waits for the process to exit. */
  exited(): Promise<Exit>;
}

const running = new Set<ChildProcess>();

/** Kills the servers a failed test left behind, so that mocha can exit. */
export function killLeftoverServers(): void {
  for (const child of running) child.kill("SIGKILL");
  running.clear();
}

/**
 * Starts `llmcache serve --port 0 ...args` as a child process (`--port`
 * later in args wins), through `launcher` if given, and waits for its
 * "listening on" line.
 */
export async function startServerProcess(
  args: string[] = [],
  env: NodeJS.ProcessEnv = {},
  nodeFlags: string[] = [],
  /** A command that runs node, such as ["prlimit", "--nofile=64"]. */
  launcher: string[] = [],
): Promise<ServerProcess> {
  const [command = process.execPath, ...prefix] = launcher.length > 0 ? [...launcher, process.execPath] : [];
  const child = spawn(command, [...prefix, ...nodeFlags, CLI, "serve", "--port", "0", ...args], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);
  child.once("exit", () => running.delete(child));
  let stdout = "";
  let stderr = "";
  child.stderr!.on("data", (chunk) => (stderr += chunk));
  const exited = once(child, "exit").then(([code, signal]) => ({ code, signal }) as Exit);
  const address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start within 10 s; stderr: ${stderr}`)), 10_000);
    child.stdout!.on("data", (chunk) => {
      stdout += chunk;
      const match = /^llmcache listening on (\S+)/m.exec(stdout);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening; stderr: ${stderr}`));
    });
  });
  return {
    child,
    address,
    stderr: () => stderr,
    stdout: () => stdout,
    stop(signal = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
    exited: () => exited,
  };
}
