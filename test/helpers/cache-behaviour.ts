import assert from "node:assert/strict";
import type { BaseCache, Generation } from "../../src/index.js";
import { copyGenerations } from "../../src/generation.js";
import { chatGenerations } from "../fixtures/generations.js";

/** The cache under test, reached through either its blocking or its async methods. */
export interface CacheUnderTest {
  lookup(prompt: string, llmString: string): Promise<Generation[] | null>;
  update(prompt: string, llmString: string, generations: Generation[]): Promise<void>;
  clear(): Promise<void>;
}

export type MethodFamily = "blocking" | "async";

export function through(cache: BaseCache, family: MethodFamily): CacheUnderTest {
  return family === "async"
    ? {
        lookup: (prompt, llmString) => cache.alookup(prompt, llmString),
        update: (prompt, llmString, generations) => cache.aupdate(prompt, llmString, generations),
        clear: () => cache.aclear(),
      }
    : {
        lookup: async (prompt, llmString) => cache.lookup(prompt, llmString),
        update: async (prompt, llmString, generations) => cache.update(prompt, llmString, generations),
        clear: async () => cache.clear(),
      };
}

/**
 * LangChain InMemoryCache's behaviour, and where llmcache does better, as one
 * suite that runs against every cache: `cacheWith(maxsize)` gives an empty
 * cache holding at most maxsize entries (none: no limit). With
 * `maxsize: false` the cache has no such limit, and its tests are left out.
 */
export function cacheBehaviour(cacheWith: (maxsize?: number) => Promise<CacheUnderTest>, options: { maxsize?: false } = {}): void {
  const paris: Generation[] = [{ text: "Paris" }];

  it("misses on a pair it has never seen", async () => {
    const cache = await cacheWith();
    assert.equal(await cache.lookup("What is the capital of France?", "model='gpt-5.4-mini'"), null);
  });

  it("returns what was stored for the pair (the seed's example)", async () => {
    const cache = await cacheWith();
    await cache.update("What is the capital of France?", "model='gpt-5.4-mini'", paris);
    assert.deepEqual(await cache.lookup("What is the capital of France?", "model='gpt-5.4-mini'"), paris);
  });

  it("tells a hit with an empty list apart from a miss", async () => {
    const cache = await cacheWith();
    await cache.update("p", "llm", []);
    assert.deepEqual(await cache.lookup("p", "llm"), []);
    assert.equal(await cache.lookup("p", "other llm"), null);
  });

  it("keeps ('a_b', 'c') and ('a', 'b_c') apart", async () => {
    const cache = await cacheWith();
    await cache.update("a_b", "c", [{ text: "first" }]);
    await cache.update("a", "b_c", [{ text: "second" }]);
    assert.deepEqual(await cache.lookup("a_b", "c"), [{ text: "first" }]);
    assert.deepEqual(await cache.lookup("a", "b_c"), [{ text: "second" }]);
  });

  it("accepts the empty string as prompt and as llm_string, each a key of its own", async () => {
    const cache = await cacheWith();
    await cache.update("", "", [{ text: "both empty" }]);
    await cache.update("", "llm", [{ text: "empty prompt" }]);
    await cache.update("prompt", "", [{ text: "empty llm" }]);
    assert.deepEqual(await cache.lookup("", ""), [{ text: "both empty" }]);
    assert.deepEqual(await cache.lookup("", "llm"), [{ text: "empty prompt" }]);
    assert.deepEqual(await cache.lookup("prompt", ""), [{ text: "empty llm" }]);
  });

  it("replaces what an update stored for the same pair", async () => {
    const cache = await cacheWith();
    await cache.update("p", "llm", [{ text: "old" }]);
    await cache.update("p", "llm", [{ text: "new" }, { text: "newer" }]);
    assert.deepEqual(await cache.lookup("p", "llm"), [{ text: "new" }, { text: "newer" }]);
  });

  it("forgets everything on clear", async () => {
    const cache = await cacheWith();
    await cache.update("p1", "llm", paris);
    await cache.update("p2", "llm", []);
    await cache.clear();
    assert.equal(await cache.lookup("p1", "llm"), null);
    assert.equal(await cache.lookup("p2", "llm"), null);
  });

  // A store that Redis bounds by memory has no maxsize (see the README's Scaling out).
  if (options.maxsize !== false) {
    for (const maxsize of [2, 3]) {
      it(`evicts the oldest inserted entry first at maxsize ${maxsize}`, async () => {
        const cache = await cacheWith(maxsize);
        for (let i = 0; i < maxsize + 2; i++) await cache.update(`p${i}`, "llm", [{ text: `g${i}` }]);
        assert.equal(await cache.lookup("p0", "llm"), null);
        assert.equal(await cache.lookup("p1", "llm"), null);
        for (let i = 2; i < maxsize + 2; i++) assert.deepEqual(await cache.lookup(`p${i}`, "llm"), [{ text: `g${i}` }]);
      });
    }

    it("does not refresh an entry on lookup", async () => {
      const cache = await cacheWith(2);
      await cache.update("first", "llm", [{ text: "1" }]);
      await cache.update("second", "llm", [{ text: "2" }]);
      assert.deepEqual(await cache.lookup("first", "llm"), [{ text: "1" }]);
      await cache.update("third", "llm", [{ text: "3" }]);
      assert.equal(await cache.lookup("first", "llm"), null, "the oldest inserted goes, even though it was just read");
      assert.deepEqual(await cache.lookup("second", "llm"), [{ text: "2" }]);
    });

    it("overwrites at capacity without evicting anything, and the entry keeps its place", async () => {
      const cache = await cacheWith(3);
      await cache.update("a", "llm", [{ text: "a" }]);
      await cache.update("b", "llm", [{ text: "b" }]);
      await cache.update("c", "llm", [{ text: "c" }]);
      await cache.update("a", "llm", [{ text: "a2" }]);
      assert.deepEqual(await cache.lookup("a", "llm"), [{ text: "a2" }]);
      assert.deepEqual(await cache.lookup("b", "llm"), [{ text: "b" }]);
      assert.deepEqual(await cache.lookup("c", "llm"), [{ text: "c" }]);
      await cache.update("d", "llm", [{ text: "d" }]);
      assert.equal(await cache.lookup("a", "llm"), null, "'a' was still the oldest inserted");
      assert.deepEqual(await cache.lookup("b", "llm"), [{ text: "b" }]);
    });

    it("keeps maxsize after clear", async () => {
      const cache = await cacheWith(2);
      await cache.update("x", "llm", []);
      await cache.clear();
      for (const prompt of ["a", "b", "c"]) await cache.update(prompt, "llm", [{ text: prompt }]);
      assert.equal(await cache.lookup("a", "llm"), null);
      assert.deepEqual(await cache.lookup("c", "llm"), [{ text: "c" }]);
    });
  }

  it("keeps unicode prompts, keys and texts exactly", async () => {
    const cache = await cacheWith();
    const prompt = "Qu'est-ce que «ça»? 東京 🚀 e\u0301 \u0000 end";
    const generations = [{ text: "Ответ: 👍🏽 ∑ \u{10FFFF}", generationInfo: { "ключ 🔑": "значение" } }];
    await cache.update(prompt, "模型 ✨", generations);
    assert.deepEqual(await cache.lookup(prompt, "模型 ✨"), generations);
    assert.equal(await cache.lookup(prompt.normalize("NFC"), "模型 ✨"), null, "no normalization of keys");
  });

  it("stores and finds a 1 MiB prompt", async () => {
    const cache = await cacheWith();
    const prompt = "x".repeat(1024 * 1024 - 1) + "é";
    await cache.update(prompt, "llm", [{ text: "big" }]);
    assert.deepEqual(await cache.lookup(prompt, "llm"), [{ text: "big" }]);
    assert.equal(await cache.lookup(prompt.slice(1), "llm"), null);
  });

  for (const [name, generations] of Object.entries(chatGenerations)) {
    it(`round-trips ${name} unchanged`, async () => {
      const cache = await cacheWith();
      await cache.update("p", "chat-model", generations);
      assert.deepEqual(await cache.lookup("p", "chat-model"), generations);
    });
  }

  it("hands out copies: changing what lookup returned does not change the cache", async () => {
    const cache = await cacheWith();
    const stored = chatGenerations["an AIMessage with tool calls, usage metadata and response metadata"]!;
    await cache.update("p", "llm", stored);
    const first = (await cache.lookup("p", "llm"))!;
    first[0]!.text = "changed";
    first[0]!.message!.usage_metadata!.input_tokens = 0;
    first[0]!.message!.tool_calls![0]!.args.city = "Lyon";
    first.push({ text: "extra" });
    assert.deepEqual(await cache.lookup("p", "llm"), stored);
  });

  it("keeps its own copy: changing what was given to update does not change the cache", async () => {
    const cache = await cacheWith();
    const given: Generation[] = [{ text: "a", generationInfo: { list: [1, 2] } }];
    await cache.update("p", "llm", given);
    given[0]!.text = "changed";
    (given[0]!.generationInfo!.list as number[]).push(3);
    assert.deepEqual(await cache.lookup("p", "llm"), [{ text: "a", generationInfo: { list: [1, 2] } }]);
  });

  it("drops undefined members and null optional fields, as JSON would", async () => {
    const cache = await cacheWith();
    const given = [
      {
        text: "t",
        generationInfo: { kept: 1, dropped: undefined },
        message: { type: "human", content: "t", id: null, name: undefined, additional_kwargs: null },
      },
    ] as unknown as Generation[];
    await cache.update("p", "llm", given);
    assert.deepEqual(await cache.lookup("p", "llm"), [
      { text: "t", generationInfo: { kept: 1 }, message: { type: "human", content: "t" } },
    ]);
  });

  describe("refuses bad input with a TypeError that names the problem", () => {
    const cases: [string, () => [unknown, unknown, unknown], RegExp][] = [
      ["a prompt that is not a string", () => [42, "llm", []], /^prompt must be a string, got number 42$/],
      ["an llm_string that is not a string", () => ["p", null, []], /^llm_string must be a string, got null$/],
      ["generations that are not a list", () => ["p", "llm", { text: "x" }], /^generations must be an array, got an object$/],
      ["a generation without text", () => ["p", "llm", [{ generationInfo: {} }]], /^generations\[0\]\.text must be a string, got undefined/],
      ["a field a generation does not have", () => ["p", "llm", [{ text: "x", txet: "y" }]], /^generations\[0\]\.txet is not a field of a generation/],
      ["generationInfo that is a list", () => ["p", "llm", [{ text: "x", generationInfo: [1] }]], /^generations\[0\]\.generationInfo must be a JSON object, got an array$/],
      ["a bigint in generationInfo", () => ["p", "llm", [{ text: "x", generationInfo: { n: 1n } }]], /^generations\[0\]\.generationInfo\.n is not JSON: got bigint 1$/],
      ["NaN in generationInfo", () => ["p", "llm", [{ text: "x", generationInfo: { n: [NaN] } }]], /^generations\[0\]\.generationInfo\.n\[0\] is not JSON: got number NaN$/],
      ["a Date in generationInfo", () => ["p", "llm", [{ text: "x", generationInfo: { at: new Date(0) } }]], /^generations\[0\]\.generationInfo\.at is not JSON: got an instance of Date$/],
      ["a message instance instead of its fields", () => ["p", "llm", [{ text: "x", message: new (class AIMessage { type = "ai"; content = "" })() }]], /^generations\[0\]\.message must be a plain object, got an instance of AIMessage; pass a LangChain message's fields/],
      ["a message without a type", () => ["p", "llm", [{ text: "x", message: { content: "" } }]], /^generations\[0\]\.message\.type must be a string, got undefined$/],
      ["message content that is a number", () => ["p", "llm", [{ text: "x", message: { type: "ai", content: 3 } }]], /^generations\[0\]\.message\.content must be a string or an array of content blocks, got number 3$/],
      ["a tool call without args", () => ["p", "llm", [{ text: "x", message: { type: "ai", content: "", tool_calls: [{ name: "f" }] } }]], /^generations\[0\]\.message\.tool_calls\[0\]\.args must be a JSON object, got undefined$/],
      ["fractional token counts", () => ["p", "llm", [{ text: "x", message: { type: "ai", content: "", usage_metadata: { input_tokens: 1.5, output_tokens: 0, total_tokens: 0 } } }]], /^generations\[0\]\.message\.usage_metadata\.input_tokens must be an integer, got number 1\.5$/],
      ["a lone surrogate in a prompt", () => ["\uD800", "llm", []], /^prompt is not well-formed Unicode/],
      ["a lone surrogate in a text", () => ["p", "llm", [{ text: "a\uDC00" }]], /^generations\[0\]\.text is not well-formed Unicode/],
      ["a lone surrogate in a member's name, named printably", () => ["p", "llm", [{ text: "x", generationInfo: { "a\uDC00": 1 } }]], /^the name of generations\[0\]\.generationInfo\["a\\udc00"\] is not well-formed Unicode/],
      ["a lone surrogate in the name of a message's extra field", () => ["p", "llm", [{ text: "x", message: { type: "ai", content: "", "x\uDC00": 1 } }]], /^the name of generations\[0\]\.message\["x\\udc00"\] is not well-formed Unicode/],
      ["NaN under a member whose name has a dot, named unambiguously", () => ["p", "llm", [{ text: "x", generationInfo: { "a.b": [NaN] } }]], /^generations\[0\]\.generationInfo\["a\.b"\]\[0\] is not JSON: got number NaN$/],
    ];
    for (const [name, args, expected] of cases) {
      it(`refuses ${name}`, async () => {
        const cache = await cacheWith();
        const [prompt, llmString, generations] = args();
        await assert.rejects(cache.update(prompt as string, llmString as string, generations as Generation[]), (error: Error) => {
          assert.ok(error instanceof TypeError, `a TypeError, got ${error}`);
          assert.match(error.message, expected);
          return true;
        });
        if (typeof prompt === "string" && typeof llmString === "string" && prompt.isWellFormed()) {
          assert.equal(await cache.lookup(prompt, llmString), null, "nothing was stored");
        }
      });
    }

    it("refuses a cycle, and nesting deeper than protobuf runtimes read", async () => {
      const cache = await cacheWith();
      const cyclic: Record<string, unknown> = {};
      cyclic.self = cyclic;
      await assert.rejects(cache.update("p", "llm", [{ text: "x", generationInfo: cyclic as never }]), /nests deeper than 100 levels \(or contains itself\)/);
      let deep: unknown = 1;
      for (let i = 0; i < 40; i++) deep = { d: deep };
      await assert.rejects(cache.update("p", "llm", [{ text: "x", generationInfo: deep as never }]), /generations\[0\]\.generationInfo nests 120 protobuf message levels below its generation, over the limit of 97/);
    });

    // Levels below the generation, as protobuf counts them: a JSON object is
    // a Struct, a map entry and a Value; a list a ListValue and a Value.
    const nested = (objects: number, leaf: unknown = "leaf"): Record<string, unknown> => {
      let value: unknown = leaf;
      for (let i = 0; i < objects; i++) value = { k: value };
      return value as Record<string, unknown>;
    };
    // [place, a generation nesting `objects` objects there, the most objects every runtime reads there, their levels]
    const deepestPlaces: [string, (objects: number) => Generation, number, number][] = [
      ["generationInfo", (n) => ({ text: "x", generationInfo: nested(n) as never }), 32, 96],
      ["message.additional_kwargs", (n) => ({ text: "x", message: { type: "ai", content: "", additional_kwargs: nested(n) as never } }), 32, 97],
      ["message.tool_calls[0].args", (n) => ({ text: "x", message: { type: "ai", content: "", tool_calls: [{ name: "f", args: nested(n) as never }] } }), 31, 95],
      ["message.artifact", (n) => ({ text: "x", message: { type: "tool", content: "", tool_call_id: "t", artifact: nested(n) as never } }), 31, 95],
      ["message.content", (n) => ({ text: "x", message: { type: "ai", content: [nested(n) as never] } }), 31, 96],
      ["message.extra fields", (n) => ({ text: "x", message: { type: "ai", content: "", custom: nested(n - 1) } }), 32, 97],
    ];
    for (const [place, generation, objects, levels] of deepestPlaces) {
      it(`stores ${place} at the deepest nesting every protobuf runtime reads, and refuses one level more`, async () => {
        const cache = await cacheWith();
        await cache.update("deepest", "llm", [generation(objects)]);
        assert.deepEqual(await cache.lookup("deepest", "llm"), copyGenerations([generation(objects)]), "as a lookup gives it back");
        await assert.rejects(cache.update("too deep", "llm", [generation(objects + 1)]), (error: Error) => {
          assert.ok(error instanceof TypeError, `a TypeError, got ${error}`);
          assert.equal(
            error.message,
            `generations[0].${place} nests ${levels + 3} protobuf message levels below its generation, over the limit of 97 ` +
              "(protobuf runtimes such as Python's refuse messages nested more than 101 levels deep)",
          );
          return true;
        });
      });
    }
  });
}
