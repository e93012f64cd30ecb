import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { ServerProcess } from "./server-process.js";

/** Node flags for a server that collects its garbage on SIGUSR2 (see gc-on-signal.ts). */
export const COLLECTABLE = ["--expose-gc", "--import", fileURLToPath(new URL("./gc-on-signal.js", import.meta.url))];

/** Has the server collect its garbage, then reads its resident memory in bytes. */
export async function residentAfterCollection(server: ServerProcess): Promise<number> {
  const before = server.stdout().split("collected\n").length;
  server.child.kill("SIGUSR2");
  while (server.stdout().split("collected\n").length === before) await new Promise((resolve) => setTimeout(resolve, 10));
  return residentBytes(server.child.pid!);
}

export function residentBytes(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(match![1]) * 1024;
}
