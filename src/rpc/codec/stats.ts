import { create } from "@bufbuild/protobuf";
import { CacheStatsSchema, StatsRequestSchema, StatsResponseSchema, type CacheStats as WireCacheStats } from "../../../gen/llmcache/v1/cache_pb.js";
import type { CacheStatsReport } from "../../base-cache.js";
import type { CacheStats } from "../../engine/stats.js";
import type { StatsReport } from "../../engine/store.js";
import { decodeMessage, encodeMessage } from "../codec.js";
import { fromKeyBytes } from "../key-bytes.js";

// StatsRequest has no fields: the client writes it empty, and the server reads it to refuse what is malformed.

export function encodeStatsRequest(): Buffer {
  return Buffer.alloc(0);
}

export function readStatsRequest(bytes: Buffer): void {
  decodeMessage(StatsRequestSchema, bytes);
}

// StatsResponse: rare, so protobuf-es writes and reads it. The server writes it from its store's
// report, where namespaces are named as the server holds names (KeyBytes)...

export function writeStatsResponse({ total, namespaces, namespacesNotListed }: StatsReport): Buffer {
  const named: Record<string, WireCacheStats> = {};
  for (const [name, stats] of Object.entries<CacheStats>(namespaces)) named[fromKeyBytes(name)] = toWireStats(stats);
  return encodeMessage(StatsResponseSchema, { total: toWireStats(total), namespaces: named, namespacesNotListed: BigInt(namespacesNotListed) });
}

// ...and the client reads it.

export function decodeStatsResponse(bytes: Buffer): CacheStatsReport {
  const { total, namespaces, namespacesNotListed } = decodeMessage(StatsResponseSchema, bytes);
  return {
    total: fromWireStats(total),
    namespaces: Object.fromEntries(Object.entries(namespaces).map(([name, stats]) => [name, fromWireStats(stats)])),
    namespacesNotListed: Number(namespacesNotListed),
  };
}

function toWireStats(stats: CacheStats): WireCacheStats {
  return create(CacheStatsSchema, {
    entries: BigInt(stats.entries),
    bytes: BigInt(stats.bytes),
    hits: BigInt(stats.hits),
    misses: BigInt(stats.misses),
    bypasses: BigInt(stats.bypasses),
    hitRatio: stats.hitRatio,
    evictions: { size: BigInt(stats.evictions.size), bytes: BigInt(stats.evictions.bytes), ttl: BigInt(stats.evictions.ttl) },
    expirations: BigInt(stats.expirations),
    updatesNotStored: BigInt(stats.updatesNotStored),
    leases: {
      granted: BigInt(stats.leases.granted),
      filled: BigInt(stats.leases.filled),
      waitsServed: BigInt(stats.leases.waitsServed),
      waitsTimedOut: BigInt(stats.leases.waitsTimedOut),
      expired: BigInt(stats.leases.expired),
      released: BigInt(stats.leases.released),
      staleFillsRefused: BigInt(stats.leases.staleFillsRefused),
    },
  });
}

function fromWireStats(stats: WireCacheStats | undefined): CacheStats {
  const evictions = stats?.evictions;
  const leases = stats?.leases;
  return {
    entries: Number(stats?.entries ?? 0),
    bytes: Number(stats?.bytes ?? 0),
    hits: Number(stats?.hits ?? 0),
    misses: Number(stats?.misses ?? 0),
    bypasses: Number(stats?.bypasses ?? 0),
    hitRatio: stats?.hitRatio ?? 0,
    evictions: { size: Number(evictions?.size ?? 0), bytes: Number(evictions?.bytes ?? 0), ttl: Number(evictions?.ttl ?? 0) },
    expirations: Number(stats?.expirations ?? 0),
    updatesNotStored: Number(stats?.updatesNotStored ?? 0),
    leases: {
      granted: Number(leases?.granted ?? 0),
      filled: Number(leases?.filled ?? 0),
      waitsServed: Number(leases?.waitsServed ?? 0),
      waitsTimedOut: Number(leases?.waitsTimedOut ?? 0),
      expired: Number(leases?.expired ?? 0),
      released: Number(leases?.released ?? 0),
      staleFillsRefused: Number(leases?.staleFillsRefused ?? 0),
    },
  };
}
