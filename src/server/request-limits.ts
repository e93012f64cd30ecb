import { LimitExceededError } from "../rpc/limit-exceeded-error.js";
import type { RequestChecks } from "../rpc/codec/request-checks.js";

/** Limits on what one request may carry, beyond grpc-js's limit on a whole message. */
export interface RequestLimits {
  /** Longest prompt, in UTF-8 bytes. */
  maxPromptBytes: number;
  /** Longest llm_string, in UTF-8 bytes. */
  maxLlmStringBytes: number;
  /** Longest namespace name, in UTF-8 bytes. */
  maxNamespaceBytes: number;
  /** Most generations in one entry. */
  maxGenerations: number;
  /** Largest reply message, in bytes: what one BatchLookup of a big entry named many times could otherwise make. */
  maxReplyBytes: number;
}

export const DEFAULT_REQUEST_LIMITS: RequestLimits = {
  maxPromptBytes: 2 * 1024 * 1024,
  maxLlmStringBytes: 256 * 1024,
  maxNamespaceBytes: 256,
  maxGenerations: 1000,
  maxReplyBytes: 16 * 1024 * 1024,
};

/** The command-line flag of each limit, for messages that tell the caller which one they hit. */
export const LIMIT_FLAGS: Record<keyof RequestLimits, string> = {
  maxPromptBytes: "--max-prompt-bytes",
  maxLlmStringBytes: "--max-llm-string-bytes",
  maxNamespaceBytes: "--max-namespace-bytes",
  maxGenerations: "--max-generations",
  maxReplyBytes: "--max-reply-bytes",
};

/** Throws LimitExceededError if `size` is over the limit. */
export function checkLimit(limits: RequestLimits, limit: keyof RequestLimits, what: string, size: number): void {
  if (size > limits[limit]) {
    throw new LimitExceededError(`${what} is ${size}, over the limit of ${limits[limit]} (${LIMIT_FLAGS[limit]})`);
  }
}

/** The checks the codecs make of each request as they read it (see RequestChecks), for these limits. */
export function requestChecks(limits: RequestLimits): RequestChecks {
  return {
    // The key strings hold one character per byte: their lengths are their sizes.
    key({ namespace, prompt, llmString }) {
      checkLimit(limits, "maxPromptBytes", "the prompt's size in bytes", prompt.length);
      checkLimit(limits, "maxLlmStringBytes", "the llm_string's size in bytes", llmString.length);
      checkLimit(limits, "maxNamespaceBytes", "the namespace's size in bytes", namespace.length);
    },
    generations(count) {
      checkLimit(limits, "maxGenerations", "the number of generations", count);
    },
  };
}
