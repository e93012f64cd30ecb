// llmcache's LangChain JS integration: `import { LangChainCache } from "<package>/langchain"`.
// It needs @langchain/core, an optional peer dependency of the package.
export { LangChainCache, type LangChainCacheOptions } from "./langchain-cache.js";
export { fromStoredMessage, toStoredMessage } from "./messages.js";
