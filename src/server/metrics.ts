import { createServer, type Server as HttpServer } from "node:http";
import type { status } from "@grpc/grpc-js";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { BackendGauges } from "../engine/cache-backend.js";
import type { LeaseEvent } from "../engine/stats.js";
import { statusName } from "../rpc/errors.js";

/**
 * Prometheus metrics of one server: calls by method and status, call
 * latency, and the store's own figures (read from its statistics at scrape
 * time, in total: namespace names are the callers' and would make the
 * label set unbounded), with Node's defaults (event-loop lag, heap, CPU).
 */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly #calls: Counter<"method" | "code">;
  readonly #streamOperations: Counter<"operation" | "code">;
  readonly #latency: Histogram<"method">;
  readonly #snapshotFailures: Counter;
  readonly #snapshotWrittenAt: Gauge;

  constructor(backend: Pick<BackendGauges, "total"> & Partial<BackendGauges>) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: "llmcache_" });
    this.#calls = new Counter({ name: "llmcache_calls_total", help: "Calls by method and gRPC status code.", labelNames: ["method", "code"], registers });
    this.#streamOperations = new Counter({
      name: "llmcache_stream_operations_total",
      help: "Operations carried by Stream calls (what batching clients send), by operation and gRPC status code.",
      labelNames: ["operation", "code"],
      registers,
    });
    this.#latency = new Histogram({
      name: "llmcache_call_duration_seconds",
      help: "Time from a call's start to its status, by method (streams: their whole life).",
      labelNames: ["method"],
      buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1, 10],
      registers,
    });
    const total = () => backend.total();
    // The store counts for itself; at each scrape the metrics take its figures.
    // A shared store's entries and bytes are asked of it at the scrape.
    const refreshed = () => backend.refreshGauges?.();
    gaugeFrom(registers, "llmcache_entries", "Entries held.", () => total().entries, refreshed);
    gaugeFrom(registers, "llmcache_bytes", "Accounted bytes held.", () => total().bytes, refreshed);
    counterFrom(registers, "llmcache_hits_total", "Lookups that found a live entry.", () => total().hits);
    counterFrom(registers, "llmcache_misses_total", "Lookups that found none.", () => total().misses);
    counterFrom(registers, "llmcache_bypasses_total", "Lookups that asked to skip the cache.", () => total().bypasses);
    counterFrom(registers, "llmcache_expirations_total", "Lookups that found their entry expired.", () => total().expirations);
    new Counter({
      name: "llmcache_evictions_total",
      help: "Entries evicted, by cause: size (maxsize), bytes (max bytes), ttl (expired).",
      labelNames: ["cause"],
      registers,
      collect() {
        const evictions = total().evictions;
        this.reset();
        for (const cause of ["size", "bytes", "ttl"] as const) this.inc({ cause }, evictions[cause]);
      },
    });
    new Counter({
      name: "llmcache_lease_events_total",
      help:
        "Single flight, by event: granted, filled, waits_served (answered by another's fill), " +
        "waits_timed_out, expired, released, stale_fills_refused.",
      labelNames: ["event"],
      registers,
      collect() {
        const counts = total().leases;
        this.reset();
        for (const [event, count] of Object.entries(counts)) this.inc({ event: LEASE_EVENT_LABELS[event as LeaseEvent] }, count);
      },
    });
    if (backend.leasesOutstanding !== undefined) {
      gaugeFrom(registers, "llmcache_leases_outstanding", "Leases granted and not yet ended.", () => backend.leasesOutstanding ?? 0);
      gaugeFrom(registers, "llmcache_lease_waiters", "Lookups waiting now for a lease's fill.", () => backend.leaseWaiters ?? 0);
    }
    const near = backend.nearCache;
    if (near) {
      gaugeFrom(registers, "llmcache_near_cache_entries", "Entries the near cache holds.", () => near.size);
      gaugeFrom(registers, "llmcache_near_cache_bytes", "Bytes the near cache holds: keys, values and their overhead.", () => near.bytes);
      counterFrom(registers, "llmcache_near_cache_hits_total", "Lookups the near cache answered without asking Redis.", () => near.counts.hits);
      counterFrom(
        registers,
        "llmcache_near_cache_invalidations_total",
        "Changes Redis reported (each drops the entry if held), and times everything was dropped.",
        () => near.counts.invalidations,
      );
      gaugeFrom(registers, "llmcache_near_cache_watchers", "Streams told of every change, for their clients' near caches (WatchChanges).", () => near.watchers);
    }
    // The log says why a snapshot failed; these let an alert see that it does, or how stale the last one is.
    this.#snapshotFailures = new Counter({ name: "llmcache_snapshot_failures_total", help: "Snapshot writes that failed.", registers });
    this.#snapshotWrittenAt = new Gauge({
      name: "llmcache_snapshot_last_success_timestamp_seconds",
      help: "When a snapshot was last written, in seconds since the epoch; 0 until the first.",
      registers,
    });
  }

  callEnded(method: string, code: status, seconds: number): void {
    this.#calls.inc({ method, code: statusName(code) });
    this.#latency.observe({ method }, seconds);
  }

  operationEnded(operation: string, code: status): void {
    this.#streamOperations.inc({ operation, code: statusName(code) });
  }

  snapshotWritten(atMs = Date.now()): void {
    this.#snapshotWrittenAt.set(atMs / 1000);
  }

  snapshotFailed(): void {
    this.#snapshotFailures.inc();
  }

  /** Serves GET /metrics on its own HTTP port; resolves with the port bound. */
  async serve(host: string, port: number): Promise<{ port: number; close(): Promise<void> }> {
    const server: HttpServer = createServer((request, response) => {
      if (request.method !== "GET" || request.url?.split("?")[0] !== "/metrics") {
        response.writeHead(404, { "content-type": "text/plain" }).end("not found: metrics are at /metrics\n");
        return;
      }
      this.registry.metrics().then(
        (text) => response.writeHead(200, { "content-type": this.registry.contentType }).end(text),
        (error: Error) => response.writeHead(500, { "content-type": "text/plain" }).end(`${error.message}\n`),
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => resolve());
    });
    const bound = (server.address() as { port: number }).port;
    return { port: bound, close: () => new Promise((resolve) => server.close(() => resolve())) };
  }
}

const LEASE_EVENT_LABELS: Record<LeaseEvent, string> = {
  granted: "granted",
  filled: "filled",
  waitsServed: "waits_served",
  waitsTimedOut: "waits_timed_out",
  expired: "expired",
  released: "released",
  staleFillsRefused: "stale_fills_refused",
};

function gaugeFrom(registers: Registry[], name: string, help: string, read: () => number, before?: () => Promise<void> | undefined): void {
  new Gauge({
    name,
    help,
    registers,
    async collect() {
      await before?.();
      this.set(read());
    },
  });
}

/** A counter whose value is a count kept elsewhere: at each scrape it is set to that count. */
function counterFrom(registers: Registry[], name: string, help: string, read: () => number): void {
  new Counter({
    name,
    help,
    registers,
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}
