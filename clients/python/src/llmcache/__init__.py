"""Python client of llmcache: LangChain's InMemoryCache as a gRPC service.

    from llmcache import CacheClient

    with CacheClient("127.0.0.1:50051") as cache:
        cache.update("What is 2 + 2?", "model='m'", [{"text": "4"}])
        cache.lookup("What is 2 + 2?", "model='m'")  # [{'text': '4'}]; a miss: None

For LangChain, `llmcache.langchain.LangChainCache` (the `langchain` extra).
"""

from ._channel import TlsConfig
from ._errors import CacheError, EntryTooLargeError
from ._generation import ChatMessage, Generation
from ._lease import Lease, LeasedLookup
from ._stats import CacheStats, Evictions, LeaseStats, StatsReport
from .client import CacheClient

__all__ = [
    "CacheClient",
    "CacheError",
    "CacheStats",
    "ChatMessage",
    "EntryTooLargeError",
    "Evictions",
    "Generation",
    "Lease",
    "LeaseStats",
    "LeasedLookup",
    "StatsReport",
    "TlsConfig",
]
