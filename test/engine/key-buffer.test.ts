import assert from "node:assert/strict";
import { KeyBuffer } from "../../src/engine/key-buffer.js";
import { SegmentIndex } from "../../src/engine/segment-index.js";

function hashOf(key: KeyBuffer, text: string, seed = 1): number {
  key.load(text);
  return key.hash(seed);
}

/** Every key of `length` characters that differs from "a" repeated in exactly one place. */
function oneByteApart(length: number): string[] {
  return Array.from({ length }, (_, at) => "a".repeat(at) + "b" + "a".repeat(length - at - 1));
}

describe("KeyBuffer", () => {
  it("hashes equal keys alike and keys one byte apart differently, in whole words and in the tail", () => {
    const key = new KeyBuffer();
    for (const length of [1, 2, 3, 4, 5, 7, 8, 9, 255, 256, 257, 70_000]) {
      const base = hashOf(key, "a".repeat(length));
      assert.equal(hashOf(key, "a".repeat(length)), base, `length ${length}`);
      const others = length > 300 ? [`b${"a".repeat(length - 1)}`, `${"a".repeat(length - 1)}b`] : oneByteApart(length);
      for (const other of others) assert.notEqual(hashOf(key, other), base, `length ${length}, ${JSON.stringify(other.slice(0, 12))}…`);
    }
  });

  it("spreads prompts that share a long prefix over distinct hashes", () => {
    const key = new KeyBuffer();
    const prefix = "You are a helpful assistant. ".repeat(8);
    const hashes = new Set(Array.from({ length: 10_000 }, (_, i) => hashOf(key, `${prefix}${i}`)));
    assert.ok(hashes.size >= 9_990, `${hashes.size} distinct hashes of 10,000`);
  });

  it("depends on the seed", () => {
    const key = new KeyBuffer();
    assert.notEqual(hashOf(key, "prompt", 1), hashOf(key, "prompt", 2));
  });

  it("tells whether a buffer holds the loaded key's bytes at a place, characters above 0x7f as single bytes", () => {
    const key = new KeyBuffer();
    key.load("caf\u00e9");
    assert.equal(key.length, 4);
    const held = Buffer.from([0x00, 0x63, 0x61, 0x66, 0xe9, 0x00]);
    assert.equal(key.isAt(held, 1), true);
    assert.equal(key.isAt(held, 0), false);
    assert.equal(key.isAt(Buffer.from("caf\u00e9", "utf8"), 0), false);
  });

  it("loads a short key correctly after one too long to keep", () => {
    const key = new KeyBuffer();
    const long = "x".repeat(100_000);
    key.load(long);
    assert.equal(key.isAt(Buffer.from(long, "latin1"), 0), true);
    key.load("short");
    assert.equal(key.length, 5);
    assert.equal(key.isAt(Buffer.from("short"), 0), true);
    assert.equal(hashOf(key, "short"), hashOf(new KeyBuffer(), "short"));
  });

  it("refuses a string with a character above U+00FF, which no byte can be", () => {
    assert.throws(() => new KeyBuffer().load("caf\u0100"), TypeError);
    const index = new SegmentIndex();
    index.add(0, 0, "model", "prompt", Buffer.from("v"));
    assert.throws(() => index.find(0, "model", "\u4e2d"), TypeError);
    assert.throws(() => index.add(1, 0, "model\u2028", "prompt", Buffer.from("v")), TypeError);
  });
});
