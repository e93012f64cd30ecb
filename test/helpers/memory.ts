import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { ServerProcess } from "./server-process.js";

/** Node flags for a server that collects its garbage on SIGUSR2 (see gc-on-signal.ts). */
export const COLLECTABLE = ["--expose-gc", "--import", fileURLToPath(new URL("./gc-on-signal.js", import.meta.url))];

/**
 * Has the server collect its garbage, then reads its resident memory and
 * what its JavaScript heap and Buffers hold (the part a leak would grow;
 * resident memory also holds pages the allocator keeps after frees), in bytes.
 */
export async function memoryAfterCollection(server: ServerProcess): Promise<{ resident: number; heap: number }> {
  const reports = () => [...server.stdout().matchAll(/^collected (\d+)$/gm)];
  const before = reports().length;
  server.child.kill("SIGUSR2");
  while (reports().length === before) await new Promise((resolve) => setTimeout(resolve, 10));
  return { resident: residentBytes(server.child.pid!), heap: Number(reports().at(-1)![1]) };
}

export function residentBytes(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(match![1]) * 1024;
}
