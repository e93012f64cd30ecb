import assert from "node:assert/strict";
import { InMemoryCache } from "../../src/index.js";
import { cacheBehaviour, through, type MethodFamily } from "../helpers/cache-behaviour.js";

describe("InMemoryCache", () => {
  for (const family of ["blocking", "async"] satisfies MethodFamily[]) {
    describe(`through its ${family} methods`, () => {
      cacheBehaviour(async (maxsize) => through(new InMemoryCache({ maxsize }), family));
    });
  }

  describe("maxsize", () => {
    it("is unbounded when not given or null", () => {
      for (const cache of [new InMemoryCache(), new InMemoryCache({ maxsize: null })]) {
        assert.equal(cache.maxsize, undefined);
        for (let i = 0; i < 10_000; i++) cache.update(`p${i}`, "llm", []);
        assert.equal(cache.size, 10_000);
        assert.deepEqual(cache.lookup("p0", "llm"), []);
      }
    });

    for (const maxsize of [0, -1, -100]) {
      it(`refuses ${maxsize} with "maxsize must be greater than 0"`, () => {
        assert.throws(() => new InMemoryCache({ maxsize }), { name: "RangeError", message: "maxsize must be greater than 0" });
      });
    }

    for (const [maxsize, shown] of [[1.5, "1.5"], [Number.NaN, "NaN"], [Infinity, "Infinity"], ["3", '"3"']] as const) {
      it(`refuses ${shown}, which is not an integer`, () => {
        assert.throws(() => new InMemoryCache({ maxsize: maxsize as number }), {
          name: "TypeError",
          message: `maxsize must be an integer, got ${shown}`,
        });
      });
    }

    it("never holds more than maxsize entries", () => {
      const cache = new InMemoryCache({ maxsize: 5 });
      for (let i = 0; i < 100; i++) {
        cache.update(`p${i}`, "llm", [{ text: String(i) }]);
        assert.ok(cache.size <= 5);
      }
      assert.equal(cache.size, 5);
      assert.deepEqual(cache.lookup("p95", "llm"), [{ text: "95" }]);
      assert.equal(cache.lookup("p94", "llm"), null);
    });
  });

  it("rejects bad input from an async method instead of throwing", () => {
    const cache = new InMemoryCache();
    const pending = cache.alookup(1 as unknown as string, "llm");
    assert.ok(pending instanceof Promise);
    return assert.rejects(pending, TypeError);
  });
});
