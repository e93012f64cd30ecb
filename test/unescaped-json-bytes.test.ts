import assert from "node:assert/strict";
import fc from "fast-check";
import { copyGenerations } from "../src/generation.js";
import { copyJson, unescapedJsonBytes, type JsonValue } from "../src/json.js";
import { chatGenerations } from "./fixtures/generations.js";

/** The oracle: the bytes of the JSON text, less one for each escape's backslash and five for each \u00XX's "u00XX" beyond one. */
function expectedBytes(value: unknown): number {
  const text = JSON.stringify(value);
  let escapes = 0;
  for (let i = 0; i < text.length; i++) {
    if (text[i] !== "\\") continue;
    escapes += text[i + 1] === "u" ? 5 : 1;
    i++;
  }
  return Buffer.byteLength(text) - escapes;
}

const text = fc.string({
  unit: fc.oneof(fc.constantFrom('"', "\\", "\n", "\b", "\u0001", "\u001f", "\u007f", "é", "€", "😀", "\u2028"), fc.string({ minLength: 1, maxLength: 1, unit: "binary" })),
});
const json = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small" },
    text,
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.integer(),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie("value")),
    fc.dictionary(text, tie("value")),
  ),
})).value;

describe("unescapedJsonBytes", () => {
  it("is the UTF-8 length of JSON.stringify less its escapes, for any JSON that copyJson accepts", () => {
    fc.assert(
      fc.property(json, (value) => {
        const copy = copyJson(value, "value");
        assert.equal(unescapedJsonBytes(copy), expectedBytes(copy));
      }),
      { numRuns: 2_000 },
    );
  });

  it("is the same for every kind of generation a cache stores, chat messages included", () => {
    for (const [name, generations] of Object.entries(chatGenerations)) {
      const copy = copyGenerations(generations);
      assert.equal(unescapedJsonBytes(copy as unknown as JsonValue), expectedBytes(copy), name);
    }
  });

  it("counts an escaped character as the character alone", () => {
    assert.equal(unescapedJsonBytes('a"b\\c\nd\u0001'), 2 + 8);
    assert.equal(unescapedJsonBytes({ "k\n": ["é", 1.5, true, null] }), Buffer.byteLength('{"k\n":["é",1.5,true,null]}'));
  });
});
