import * as hdr from "hdr-histogram-js";

export interface LoadResult {
  /** Operations (or keys, for batches) completed per second. */
  perSecond: number;
  /** Latency of one call, in microseconds. */
  p50: number;
  p99: number;
  p999: number;
  calls: number;
}

/**
 * A closed loop: `callers` callers each make one call, wait for it, and make
 * the next, for `seconds` after a warm-up. Each call counts `unitsPerCall`
 * operations (a batch of 100 keys counts 100).
 */
export async function runLoad(
  call: (caller: number, iteration: number) => Promise<unknown>,
  options: { callers: number; seconds: number; warmupSeconds: number; unitsPerCall?: number },
): Promise<LoadResult> {
  await runFor(call, options.callers, options.warmupSeconds, undefined);
  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
  const start = performance.now();
  const calls = await runFor(call, options.callers, options.seconds, histogram);
  const elapsedSeconds = (performance.now() - start) / 1000;
  const result = {
    perSecond: (calls * (options.unitsPerCall ?? 1)) / elapsedSeconds,
    p50: histogram.getValueAtPercentile(50),
    p99: histogram.getValueAtPercentile(99),
    p999: histogram.getValueAtPercentile(99.9),
    calls,
  };
  histogram.destroy();
  return result;
}

async function runFor(
  call: (caller: number, iteration: number) => Promise<unknown>,
  callers: number,
  seconds: number,
  histogram: hdr.Histogram | undefined,
): Promise<number> {
  const stopAt = performance.now() + seconds * 1000;
  let calls = 0;
  await Promise.all(
    Array.from({ length: callers }, async (_, caller) => {
      for (let iteration = 0; performance.now() < stopAt; iteration++) {
        const begun = performance.now();
        await call(caller, iteration);
        histogram?.recordValue(Math.max(1, Math.round((performance.now() - begun) * 1000)));
        calls++;
      }
    }),
  );
  return calls;
}
