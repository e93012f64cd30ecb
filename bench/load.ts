import * as hdr from "hdr-histogram-js";
import { cpuSeconds } from "./processes.js";

export interface LoadResult {
  /** Operations (or keys, for batches) completed per second. */
  perSecond: number;
  /** Latency of one call, in microseconds. */
  p50: number;
  p99: number;
  p999: number;
  calls: number;
  /**
   * CPU time per operation (or key), in µs, over the measured seconds: this
   * process's (the client's, load loop included) and, given its pid, the
   * server's, from /proc at 10 ms resolution.
   */
  cpu: { client: number; server?: number };
}

/**
 * A closed loop: `callers` callers each make one call, wait for it, and make
 * the next, for `seconds` after a warm-up. Each call counts `unitsPerCall`
 * operations (a batch of 100 keys counts 100). With `serverPid`, the
 * server's CPU per operation is measured too: client and server share this
 * machine's cores, so where a system's throughput goes shows in the two.
 */
export async function runLoad(
  call: (caller: number, iteration: number) => Promise<unknown>,
  options: { callers: number; seconds: number; warmupSeconds: number; unitsPerCall?: number; serverPid?: number },
): Promise<LoadResult> {
  await runFor(call, options.callers, options.warmupSeconds, undefined);
  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
  const { serverPid } = options;
  const serverCpu0 = serverPid === undefined ? 0 : cpuSeconds(serverPid);
  const clientCpu0 = process.cpuUsage();
  const start = performance.now();
  const calls = await runFor(call, options.callers, options.seconds, histogram);
  const elapsedSeconds = (performance.now() - start) / 1000;
  const clientCpu = process.cpuUsage(clientCpu0);
  const units = calls * (options.unitsPerCall ?? 1);
  const result = {
    perSecond: units / elapsedSeconds,
    p50: histogram.getValueAtPercentile(50),
    p99: histogram.getValueAtPercentile(99),
    p999: histogram.getValueAtPercentile(99.9),
    calls,
    cpu: {
      client: (clientCpu.user + clientCpu.system) / units,
      server: serverPid === undefined ? undefined : ((cpuSeconds(serverPid) - serverCpu0) * 1e6) / units,
    },
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
