"""What the cache holds and has done, as Stats reports it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Evictions:
    """Entries removed to make room or because they expired, by cause."""

    size: int
    """To stay within the entry limit (maxsize)."""
    bytes: int
    """To stay within the byte budget."""
    ttl: int
    """Expired entries removed before anyone looked them up."""


@dataclass(frozen=True)
class LeaseStats:
    """Single flight's work (see LeasedLookup), since the server started."""

    granted: int
    """Lookups that missed and were granted a lease."""
    filled: int
    """Updates with a current lease token."""
    waits_served: int
    """Lookups that waited and were answered by another caller's fill."""
    waits_timed_out: int
    """Lookups that waited their wait_ms (or deadline) and got a plain miss."""
    expired: int
    """Leases that ended at their time with no fill."""
    released: int
    """Leases given up through release_lease."""
    stale_fills_refused: int
    """Updates whose lease token was stale and that were not stored."""


@dataclass(frozen=True)
class CacheStats:
    """What a namespace, or the whole cache, holds and has done since start."""

    entries: int
    bytes: int
    """Accounted bytes: entries' keys and values plus fixed overheads."""
    hits: int
    misses: int
    """Lookups that found no live entry, expired ones included."""
    bypasses: int
    """Lookups that asked to bypass the cache (neither hits nor misses)."""
    hit_ratio: float
    """hits / (hits + misses); 0 before the first lookup."""
    evictions: Evictions
    expirations: int
    """Lookups that found their entry expired (counted as misses too)."""
    updates_not_stored: int
    """Updates that stored nothing: no_store, only-if-absent with the pair
    there, or a stale lease token."""
    leases: LeaseStats
    """Single flight's leases, waits and fills."""


@dataclass(frozen=True)
class StatsReport:
    """The cache's statistics, in total and per namespace."""

    total: CacheStats
    namespaces: dict[str, CacheStats]
    """At most 1,000 namespaces by name ("" is the default namespace)."""
    namespaces_not_listed: int
    """How many namespaces the server knows beyond those listed."""


def decode_stats(wire: Any) -> StatsReport:
    """A wire StatsResponse as a StatsReport."""
    return StatsReport(
        total=_cache_stats(wire.total),
        namespaces={
            name: _cache_stats(stats) for name, stats in wire.namespaces.items()
        },
        namespaces_not_listed=wire.namespaces_not_listed,
    )


def _cache_stats(wire: Any) -> CacheStats:
    evictions = wire.evictions
    return CacheStats(
        entries=wire.entries,
        bytes=wire.bytes,
        hits=wire.hits,
        misses=wire.misses,
        bypasses=wire.bypasses,
        hit_ratio=wire.hit_ratio,
        evictions=Evictions(
            size=evictions.size, bytes=evictions.bytes, ttl=evictions.ttl
        ),
        expirations=wire.expirations,
        updates_not_stored=wire.updates_not_stored,
        leases=_lease_stats(wire.leases),
    )


def _lease_stats(wire: Any) -> LeaseStats:
    return LeaseStats(
        granted=wire.granted,
        filled=wire.filled,
        waits_served=wire.waits_served,
        waits_timed_out=wire.waits_timed_out,
        expired=wire.expired,
        released=wire.released,
        stale_fills_refused=wire.stale_fills_refused,
    )
