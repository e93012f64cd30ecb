import assert from "node:assert/strict";
import { CacheError } from "../../src/index.js";

/** For assert.throws and assert.rejects: a CacheError with this code and a message that matches. */
export function isCacheError(code: string, message: RegExp) {
  return (error: unknown) => {
    assert.ok(error instanceof CacheError, `a CacheError, got ${error}`);
    assert.equal(error.code, code);
    assert.match(error.message, message);
    return true;
  };
}
