import * as hdr from "hdr-histogram-js";
import { CacheClient, type CacheError } from "../../src/index.js";

// One load-generating process of the reliability suite's load check:
// `callers` callers each looking up (70%) or updating (30%) random keys of
// `keys`, with values of 1 to 8 KiB, for `seconds`; prints one JSON line.
const [address, seconds, callers, keys] = [process.argv[2]!, Number(process.argv[3]), Number(process.argv[4]), Number(process.argv[5])];
const client = new CacheClient({ address, timeoutMs: 10_000 });
const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
const errors: Record<string, number> = {};
let operations = 0;
const stopAt = performance.now() + seconds * 1000;
const texts = Array.from({ length: 8 }, (_, k) => "x".repeat((k + 1) * 1024));

await Promise.all(
  Array.from({ length: callers }, async (_, caller) => {
    for (let i = 0; performance.now() < stopAt; i++) {
      const key = `load key ${Math.floor(Math.random() * keys)}`;
      const started = performance.now();
      try {
        if (Math.random() < 0.7) await client.alookup(key, "llm");
        else await client.aupdate(key, "llm", [{ text: texts[(caller + i) % texts.length]! }]);
        histogram.recordValue(Math.max(1, Math.round((performance.now() - started) * 1000)));
        operations++;
      } catch (error) {
        const code = (error as CacheError).code ?? String(error);
        errors[code] = (errors[code] ?? 0) + 1;
      }
    }
  }),
);
await client.close();
console.log(
  JSON.stringify({
    operations,
    errors,
    p50: histogram.getValueAtPercentile(50),
    p99: histogram.getValueAtPercentile(99),
    p999: histogram.getValueAtPercentile(99.9),
  }),
);
