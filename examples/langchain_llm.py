"""A LangChain Python LLM with llmcache as every model's cache, no glue code.

Any LLM or chat model uses the cache set with set_llm_cache; the fake LLM
here stands in for a real one. Run a server first (npx llmcache serve), then:
python examples/langchain_llm.py
"""

import os

from langchain_core.globals import set_llm_cache
from langchain_core.language_models.fake import FakeListLLM
from llmcache.langchain import LangChainCache

set_llm_cache(
    LangChainCache(
        address=os.environ.get("LLMCACHE_ADDRESS", "127.0.0.1:50051"),
        namespace="examples",
    )
)

llm = FakeListLLM(responses=["Paris", "a second, different answer"])
first = llm.invoke("What is the capital of France?")
second = llm.invoke(
    "What is the capital of France?"
)  # from the cache: the model is not called
assert first == "Paris", first
assert second == "Paris", second
print("langchain (Python): the second invoke came from the cache:", second)
