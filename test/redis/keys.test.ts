import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { ENTRY_PREFIX, KEY_PREFIX, pairKeys, scanPattern } from "../../src/redis/keys.js";

/**
 * Keys are what replicas of every version share in one Redis: a replica
 * that named a pair differently would miss every entry the others stored.
 * So the layout is pinned here, computed the long way.
 */
function expectedDigest(prompt: string, llmString: string): string {
  return createHash("sha256")
    .update(`${prompt.length}:`)
    .update(Buffer.from(prompt, "latin1"))
    .update(Buffer.from(llmString, "latin1"))
    .digest("base64url");
}

describe("Redis keys", () => {
  it("name a pair by the SHA-256 of its prompt's length, its prompt and its llm_string, in the namespace's hex", () => {
    // Bytes above 0x7f, held one per character, must hash as those bytes and not as UTF-8.
    const prompt = "caf\u00e9 \u00ff\u0000 prompt";
    const llmString = "model=\u00e9";
    const keys = pairKeys("ns\u00e9", prompt, llmString);
    const tail = `6e73e9:{${expectedDigest(prompt, llmString)}}`;
    assert.equal(keys.entry, `${ENTRY_PREFIX}${tail}`);
    assert.equal(keys.lease, `${KEY_PREFIX}l:${tail}`);
  });

  it("keep apart pairs whose prompt and llm_string join into the same bytes", () => {
    const a = pairKeys("", "ab", "c");
    const b = pairKeys("", "a", "bc");
    assert.notEqual(a.entry, b.entry);
  });

  it("give the empty namespace, the empty prompt and the empty llm_string keys of their own", () => {
    assert.equal(pairKeys("", "", "").entry, `${ENTRY_PREFIX}:{${expectedDigest("", "")}}`);
  });

  it("scan one namespace's entries and leases, or every namespace's", () => {
    assert.equal(scanPattern("ns"), `${KEY_PREFIX}[el]:6e73:*`);
    assert.equal(scanPattern(), `${KEY_PREFIX}[el]:*`);
  });
});
