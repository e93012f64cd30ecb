import { constants, PerformanceObserver, type PerformanceEntry } from "node:perf_hooks";

// Makes garbage that lives long enough to reach V8's old generation beside
// a live set, then prints how many full collections that took as JSON:
// {"major": N}. With an argument, imports that module first.
if (process.argv[2]) await import(process.argv[2]);
let major = 0;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    if ((entry as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) major++;
  }
}).observe({ entryTypes: ["gc"] });
const live = Array.from({ length: 300_000 }, (_, i) => ({ i, text: `live ${i}` }));
const ring: unknown[] = new Array(200_000);
for (let i = 0; i < 6_000_000; i++) ring[i % ring.length] = { i, text: `dying ${i % 1000}` };
await new Promise((resolve) => setTimeout(resolve, 50)); // the observer is called after the collections
console.log(JSON.stringify({ major, live: live.length }));
