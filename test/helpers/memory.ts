import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { ServerProcess } from "./server-process.js";

/** Node flags for a server that collects its garbage on SIGUSR2 (see gc-on-signal.ts). */
export const COLLECTABLE = ["--expose-gc", "--import", fileURLToPath(new URL("./gc-on-signal.js", import.meta.url))];

/** What a collected server holds, in bytes: `heap` is heapUsed + external, what a leak would grow. */
export interface CollectedMemory {
  resident: number;
  heap: number;
  /** process.memoryUsage()'s parts, so that a failure can say which one grew (external includes arrayBuffers). */
  parts: { heapUsed: number; external: number; arrayBuffers: number };
}

const REPORT = /^collected heapUsed (\d+) external (\d+) arrayBuffers (\d+)$/gm;

/**
 * Has the server collect its garbage, then reads its resident memory and
 * what its JavaScript heap and Buffers hold (the part a leak would grow;
 * resident memory also holds pages the allocator keeps after frees).
 */
export async function memoryAfterCollection(server: ServerProcess): Promise<CollectedMemory> {
  const reports = () => [...server.stdout().matchAll(REPORT)];
  const before = reports().length;
  server.child.kill("SIGUSR2");
  while (reports().length === before) await new Promise((resolve) => setTimeout(resolve, 10));
  const [heapUsed, external, arrayBuffers] = reports().at(-1)!.slice(1).map(Number) as [number, number, number];
  return { resident: residentBytes(server.child.pid!), heap: heapUsed + external, parts: { heapUsed, external, arrayBuffers } };
}

/** How each part grew from one reading to the next, for a failure's message. */
export function partsGrown(before: CollectedMemory, after: CollectedMemory): string {
  const grown = (part: keyof CollectedMemory["parts"]) => {
    const mib = (after.parts[part] - before.parts[part]) / 2 ** 20;
    return `${part} ${mib >= 0 ? "+" : ""}${mib.toFixed(1)} MiB`;
  };
  return `${grown("heapUsed")}, ${grown("external")} (of which ${grown("arrayBuffers")})`;
}

export function residentBytes(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(match![1]) * 1024;
}
