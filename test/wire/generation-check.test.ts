import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { GenerationSchema } from "../../gen/llmcache/v1/cache_pb.js";
import { copyGenerations } from "../../src/generation.js";
import { checkGenerationNesting } from "../../src/nesting.js";
import { DecodeError } from "../../src/rpc/codec.js";
import { readBatchUpdateRequest } from "../../src/rpc/codec/batch-update.js";
import { checkGeneration } from "../../src/rpc/codec/generation-check.js";
import { fromWireGeneration, toWireGeneration } from "../../src/rpc/codec/generation-objects.js";
import { decodeLookupResponse, writeLookupResponse } from "../../src/rpc/codec/lookup.js";
import { readStreamRequest } from "../../src/rpc/codec/stream.js";
import { readUpdateRequest } from "../../src/rpc/codec/update.js";
import { DEFAULT_REQUEST_LIMITS, requestChecks } from "../../src/server/request-limits.js";
import { chatGenerations } from "../fixtures/generations.js";

// The server checks the generations it stores on their bytes, building
// nothing (rpc/codec/generation-check.ts). These are the bytes it must
// refuse, written by hand, and what it says of each.

const CHECKS = requestChecks(DEFAULT_REQUEST_LIMITS);
const NESTING_LIMIT = "over the limit of 97 (protobuf runtimes such as Python's refuse messages nested more than 101 levels deep)";

// The protobuf binary format, by hand.
const varint = (n: number): number[] => {
  const bytes: number[] = [];
  while (n >= 0x80) {
    bytes.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  return [...bytes, n];
};
const bytesOf = (body: string | number[] | Buffer): Buffer => (typeof body === "string" ? Buffer.from(body, "utf8") : Buffer.from(body));
/** A length-delimited field. */
const ld = (field: number, ...bodies: (string | number[] | Buffer)[]): Buffer => {
  const body = Buffer.concat(bodies.map(bytesOf));
  return Buffer.concat([Buffer.from([...varint((field << 3) | 2), ...varint(body.length)]), body]);
};
const varintField = (field: number, value: number): Buffer => Buffer.from([...varint(field << 3), ...varint(value)]);
const doubleField = (field: number, value: number): Buffer => {
  const body = Buffer.alloc(8);
  body.writeDoubleLE(value);
  return Buffer.concat([Buffer.from(varint((field << 3) | 1)), body]);
};

// google.protobuf.Struct, Value and ListValue.
const entry = (key: string | number[], value?: Buffer): Buffer => ld(1, ld(1, key), ...(value ? [value] : [])); // a Struct's field
const withValue = (value: Buffer): Buffer => ld(2, value); // an entry's value
const stringValue = (text: string | number[]): Buffer => ld(3, text);
const numberValue = (n: number): Buffer => doubleField(2, n);
const structValue = (...entries: Buffer[]): Buffer => ld(5, ...entries);
const listValue = (...values: Buffer[]): Buffer => ld(6, ...values.map((value) => ld(1, value)));

/**
 * A Struct whose deepest message is `levels` levels below the generation
 * when it is the generation's generation_info (the Struct is level 1): an
 * entry, then Values and ListValues in turn.
 */
function structOfDepth(levels: number): Buffer {
  // From the innermost Value (level `levels` or `levels - 1`) outwards: each ListValue and Value adds two levels.
  let value = levels % 2 === 1 ? varintField(1, 0) : listValue(); // null_value; or an empty list one level deeper
  for (let level = levels % 2 === 1 ? levels : levels - 1; level > 3; level -= 2) value = listValue(value);
  return entry("k", withValue(value));
}

// The messages of a generation, by their field numbers in cache.proto.
const generation = (...fields: Buffer[]): Buffer => Buffer.concat(fields);
const text = (value: string | number[]): Buffer => ld(1, value);
const generationInfo = (...entries: Buffer[]): Buffer => ld(2, ...entries);
const message = (...fields: Buffer[]): Buffer => ld(3, ld(1, "ai"), ...fields);
const blocks = (...values: Buffer[]): Buffer => ld(3, ...values.map((value) => ld(1, value)));
const additionalKwargs = (...entries: Buffer[]): Buffer => ld(4, ...entries);
const toolCall = (name: string, ...argsEntries: Buffer[]): Buffer => ld(6, ld(1, name), ld(2, ...argsEntries));
const artifact = (value: Buffer): Buffer => ld(14, value);

/** An UpdateRequest of ("p", "l") with these generations, as its bytes. */
const update = (...generations: Buffer[]): Buffer => Buffer.concat([ld(1, "p"), ld(2, "l"), ...generations.map((g) => ld(3, g))]);

/** Asserts that the server refuses the update with exactly this message, a DecodeError (INVALID_ARGUMENT). */
function refuses(bytes: Buffer, problem: string): void {
  assert.throws(
    () => readUpdateRequest(bytes, CHECKS),
    (error: unknown) => {
      assert.ok(error instanceof DecodeError, `a DecodeError, got ${error}`);
      assert.equal(error.message, `cannot decode llmcache.v1.UpdateRequest: ${problem}`);
      return true;
    },
  );
}

/** The generations the client reads back from what the server stored for the update. */
function storedAndReadBack(bytes: Buffer) {
  return decodeLookupResponse(writeLookupResponse(readUpdateRequest(bytes, CHECKS).generations));
}

describe("the server's check of a generation's bytes", () => {
  describe("stores the bytes as they came", () => {
    it("for every generation the client writes", () => {
      for (const generations of Object.values(chatGenerations)) {
        for (const one of copyGenerations(generations)) {
          const bytes = Buffer.from(toBinary(GenerationSchema, create(GenerationSchema, toWireGeneration(one))));
          assert.deepEqual(readUpdateRequest(update(bytes), CHECKS).generations, ld(2, bytes)); // as LookupResponse.generations
        }
      }
    });

    it("unknown fields included, at any level, groups too", () => {
      const group = Buffer.from([...varint((98 << 3) | 3), (1 << 3) | 0, 5, ...varint((98 << 3) | 4)]);
      const unknown = Buffer.concat([varintField(99, 7), group, ld(97, [0xff])]); // a varint, a group, and bytes that are no UTF-8
      const bytes = generation(text("t"), unknown, generationInfo(entry("a", withValue(stringValue("b"))), unknown), message(unknown, additionalKwargs(unknown)));
      assert.deepEqual(readUpdateRequest(update(bytes), CHECKS).generations, ld(2, bytes));
      assert.deepEqual(storedAndReadBack(update(bytes)), [
        { text: "t", generationInfo: { a: "b" }, message: { type: "ai", content: "", additional_kwargs: {}, tool_calls: [], invalid_tool_calls: [] } },
      ]);
    });

    it("where they came, when they came one after another: only their keys are rewritten", () => {
      const generations = [generation(text("Paris")), generation(text("Lyon 🗼"), generationInfo(entry("a", withValue(stringValue("b"))))), generation(text("x".repeat(300)))];
      const request = update(...generations);
      const firstGeneration = ld(1, "p").length + ld(2, "l").length;
      const stored = readUpdateRequest(request, CHECKS).generations;
      assert.deepEqual(stored, Buffer.concat(generations.map((g) => ld(2, g))));
      assert.equal(stored.buffer, request.buffer, "a view of the request, not a copy");
      assert.equal(stored.byteOffset, request.byteOffset + firstGeneration);
      assert.deepEqual(
        storedAndReadBack(update(...generations))!.map((g) => g.text),
        ["Paris", "Lyon 🗼", "x".repeat(300)],
      );
    });

    it("laid out afresh when they came apart, or with a length written in more bytes than it needs", () => {
      const [first, second] = [generation(text("Paris")), generation(text("Lyon"))];
      const apart = Buffer.concat([ld(1, "p"), ld(3, first), ld(2, "l"), ld(3, second)]);
      const longLength = Buffer.concat([ld(1, "p"), ld(2, "l"), Buffer.from([(3 << 3) | 2, 0x80 | first.length, 0x00]), first]);
      for (const [request, expected] of [
        [apart, Buffer.concat([ld(2, first), ld(2, second)])],
        [longLength, ld(2, first)],
      ] as const) {
        const untouched = Buffer.from(request);
        const stored = readUpdateRequest(request, CHECKS).generations;
        assert.deepEqual(stored, expected);
        assert.deepEqual(request, untouched, "the request's bytes are left as they came");
      }
    });

    it("in a batch and a stream, each update's own", () => {
      const [first, second] = [generation(text("Paris")), generation(text("Lyon"))];
      const batch = Buffer.concat([ld(1, update(first)), ld(1, update(first, second))]);
      assert.deepEqual(
        readBatchUpdateRequest(batch, CHECKS).map((read) => read.generations),
        [ld(2, first), Buffer.concat([ld(2, first), ld(2, second)])],
      );
      const stream = Buffer.concat([ld(1, varintField(1, 1), ld(3, update(second))), ld(1, varintField(1, 2), ld(3, update(first, second)))]);
      assert.deepEqual(
        readStreamRequest(stream, CHECKS).map((operation) => (operation.kind === "update" ? operation.update.generations : operation.kind)),
        [ld(2, second), Buffer.concat([ld(2, first), ld(2, second)])],
      );
    });

    it("a Value without a kind, or NaN, in a Struct field: protobuf-es reads them there (null, NaN)", () => {
      const bytes = generation(text("t"), generationInfo(entry("none", withValue(Buffer.alloc(0))), entry("missing"), entry("nan", withValue(numberValue(NaN)))));
      assert.deepEqual(storedAndReadBack(update(bytes)), [{ text: "t", generationInfo: { none: null, missing: null, nan: NaN } }]);
    });
  });

  describe("refuses invalid UTF-8", () => {
    const invalid = [0x61, 0xc3, 0x28];
    it("deep inside a Struct", () => {
      const deep = entry("a", withValue(structValue(entry("b", withValue(listValue(stringValue("ok"), stringValue(invalid)))))));
      refuses(update(generation(text("t")), generation(text("t"), generationInfo(deep))), "generations[1]: a string field is not valid UTF-8");
    });

    it("in a Struct's key, a content block, a tool call's name and the text", () => {
      refuses(update(generation(generationInfo(entry(invalid, withValue(stringValue("v")))))), "generations[0]: a string field is not valid UTF-8");
      refuses(update(generation(message(blocks(stringValue(invalid))))), "generations[0]: a string field is not valid UTF-8");
      refuses(update(generation(message(toolCall("\u00e9\u00e9".repeat(20)), ld(6, ld(1, invalid))))), "generations[0]: a string field is not valid UTF-8");
      refuses(update(generation(text([0xed, 0xa0, 0x80]))), "generations[0]: a string field is not valid UTF-8");
    });
  });

  describe("refuses a known field with the wrong wire type", () => {
    const cases: [string, Buffer, string][] = [
      ["Generation.text as a varint", varintField(1, 3), "llmcache.v1.Generation.text has wire type varint, expected length-delimited"],
      ["ChatMessage.additional_kwargs as a varint", ld(3, varintField(4, 1)), "llmcache.v1.ChatMessage.additional_kwargs has wire type varint, expected length-delimited"],
      ["UsageMetadata.input_tokens as a string", ld(3, ld(8, ld(1, "12"))), "llmcache.v1.UsageMetadata.input_tokens has wire type length-delimited, expected varint"],
      ["Value.number_value as a varint", generationInfo(entry("n", withValue(varintField(2, 1)))), "google.protobuf.Value.number_value has wire type varint, expected 64-bit"],
      ["Value.struct_value as a 32-bit number", generationInfo(entry("n", withValue(Buffer.from([(5 << 3) | 5, 0, 0, 0, 0])))), "google.protobuf.Value.struct_value has wire type 32-bit, expected length-delimited"],
    ];
    for (const [name, bytes, problem] of cases) {
      it(name, () => refuses(update(generation(bytes)), `generations[0]: ${problem}`));
    }
  });

  describe("refuses a generation nested deeper than Python reads", () => {
    it("stores one exactly 97 levels deep, which the client's own check of the JSON allows too", () => {
      const [read] = storedAndReadBack(update(generation(text("t"), generationInfo(structOfDepth(97)))))!;
      checkGenerationNesting(read!, "generations[0]");
      assert.throws(() => checkGenerationNesting({ text: "", generationInfo: { k: read!.generationInfo! } }, "g"), {
        message: `g.generationInfo nests 100 protobuf message levels below its generation, ${NESTING_LIMIT}`,
      });
    });

    it("naming the place, and how deep it goes", () => {
      refuses(update(generation(generationInfo(structOfDepth(98)))), `generations[0].generationInfo nests 98 protobuf message levels below its generation, ${NESTING_LIMIT}`);
      refuses(
        update(generation(message(additionalKwargs(structOfDepth(98))))),
        `generations[0].message.additional_kwargs nests 99 protobuf message levels below its generation, ${NESTING_LIMIT}`,
      );
      refuses(
        update(generation(message(toolCall("a", structOfDepth(3)), toolCall("b", structOfDepth(96))))),
        `generations[0].message.tool_calls[1].args nests 98 protobuf message levels below its generation, ${NESTING_LIMIT}`,
      );
    });

    it("and stops reading at protobuf-es's recursion limit, however deep the bytes go", () => {
      refuses(update(generation(generationInfo(structOfDepth(100)))), "generations[0]: maximum recursion depth of 100 reached");
      let value = listValue();
      for (let i = 0; i < 5_000; i++) value = listValue(value);
      refuses(update(generation(message(artifact(value)))), "generations[0]: maximum recursion depth of 100 reached");
    });

    it("after its bytes were all read: a problem of encoding further on is told first", () => {
      refuses(update(generation(generationInfo(structOfDepth(98)), text([0xff]))), "generations[0]: a string field is not valid UTF-8");
    });
  });

  describe("refuses truncated bytes", () => {
    it("a message whose length runs past the end of the one that holds it", () => {
      const info = generationInfo(entry("k", withValue(stringValue("value"))));
      info[1]! += 4; // generation_info claims 4 bytes more than the generation holds; the update's next field follows
      refuses(Buffer.concat([ld(3, info), ld(4, "namespace")]), "generations[0]: premature EOF");
    });

    it("a double cut short, and a tag cut short", () => {
      refuses(update(generation(generationInfo(entry("n", withValue(numberValue(1).subarray(0, 5)))))), "generations[0]: premature EOF");
      refuses(update(Buffer.from([0x80])), "generations[0]: premature EOF");
    });
  });

  describe("refuses JSON that the client turns into JSON strictly (content blocks, artifact)", () => {
    it("a Value without a kind", () => {
      refuses(update(generation(message(blocks(stringValue("a"), Buffer.alloc(0))))), "generations[0].message.content: google.protobuf.Value must have a value");
      refuses(update(generation(message(artifact(structValue(entry("k")))))), "generations[0].message.artifact: google.protobuf.Value must have a value");
    });

    it("NaN or an infinity", () => {
      refuses(update(generation(message(artifact(listValue(numberValue(1), numberValue(-Infinity)))))), "generations[0].message.artifact: google.protobuf.Value cannot be NaN or Infinity");
    });
  });

  it("refuses a map entry with a field other than its key and value, which protobuf-es cannot skip", () => {
    const odd = ld(1, ld(1, "k"), varintField(3, 1), withValue(stringValue("v")));
    refuses(update(generation(generationInfo(odd))), "generations[0]: google.protobuf.Struct.fields entry has a field 3: a map entry holds only its key (1) and value (2)");
  });

  it("names the item of a batch or a stream", () => {
    const bad = generation(text([0xff]));
    const batch = Buffer.concat([ld(1, update(generation(text("ok")))), ld(1, update(bad))]);
    assert.throws(() => readBatchUpdateRequest(batch, CHECKS), {
      name: "DecodeError",
      message: "cannot decode llmcache.v1.BatchUpdateRequest: updates[1]: generations[0]: a string field is not valid UTF-8",
    });
    const [operation] = readStreamRequest(ld(1, varintField(1, 7), ld(3, update(bad))), CHECKS);
    assert.equal(operation?.kind, "invalid");
    assert.equal(operation.kind === "invalid" && operation.problem.message, "cannot decode llmcache.v1.UpdateRequest: generations[0]: a string field is not valid UTF-8");
  });

  it("keeps only what every client reads back: whatever it accepts of mangled generations, protobuf-es decodes", () => {
    const seeds = Object.values(chatGenerations).flatMap((generations) =>
      copyGenerations(generations).map((one) => Buffer.from(toBinary(GenerationSchema, create(GenerationSchema, toWireGeneration(one))))),
    );
    const mangled = fc
      .tuple(fc.constantFrom(...seeds), fc.array(fc.tuple(fc.nat(), fc.nat(255), fc.constantFrom("flip", "cut", "insert")), { minLength: 1, maxLength: 3 }))
      .map(([seed, edits]) => {
        let bytes = Buffer.from(seed);
        for (const [at, value, edit] of edits) {
          const i = bytes.length === 0 ? 0 : at % bytes.length;
          if (edit === "flip") bytes[i] = value;
          else if (edit === "cut") bytes = bytes.subarray(0, i);
          else bytes = Buffer.concat([bytes.subarray(0, i), Buffer.from([value]), bytes.subarray(i)]);
        }
        return bytes;
      });
    let accepted = 0;
    fc.assert(
      fc.property(mangled, (bytes) => {
        try {
          checkGeneration(bytes, 0, bytes.length, 0);
        } catch (error) {
          assert.ok(error instanceof DecodeError, `a DecodeError, got ${error}`);
          return;
        }
        accepted++;
        const read = fromWireGeneration(fromBinary(GenerationSchema, bytes));
        checkGenerationNesting(read, "generations[0]");
      }),
      { numRuns: 3_000, seed: 20261126 },
    );
    assert.ok(accepted > 100, `only ${accepted} of the mangled generations were accepted: the property says little`);
  });
});
