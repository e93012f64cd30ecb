import assert from "node:assert/strict";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import fc from "fast-check";
import { WireReader } from "../../src/rpc/codec/wire-reader.js";

// WireReader stands in for protobuf-es's BinaryReader in the codecs, reading
// a message's buffer in place. Whatever the bytes, it must read what
// BinaryReader reads over the same window, and fail where and as it fails.

type Step = "tag" | "uint32" | "uint64" | "bool" | { skip: WireType; fieldNumber?: number };

/** The result of a step, or its error, and where the reader is after it. */
function run(reader: { pos: number }, step: (reader: never) => unknown): { value?: unknown; error?: string; pos?: number } {
  try {
    const value = step(reader as never);
    return { value: typeof value === "string" ? BigInt(value) : value, pos: reader.pos };
  } catch (error) {
    return { error: `${(error as Error).name}: ${(error as Error).message}` };
  }
}

function stepOf(step: Step): (reader: WireReader & BinaryReader) => unknown {
  if (typeof step !== "string") return (reader) => void reader.skip(step.skip, step.fieldNumber);
  if (step === "uint64") return (reader) => BigInt(reader.uint64());
  return (reader) => reader[step]();
}

/** Runs the steps on both readers over buffer[start, end): the same values, positions and errors, step by step. */
function assertReadAlike(buffer: Uint8Array, start: number, end: number, steps: readonly Step[]): void {
  const ours = new WireReader(buffer, start, end);
  const theirs = new BinaryReader(buffer.subarray(0, end));
  theirs.pos = start;
  for (const step of steps) {
    const read = stepOf(step);
    const expected = run(theirs, read);
    assert.deepEqual(run(ours, read), expected, `step ${JSON.stringify(step)} at ${theirs.pos}`);
    if (expected.error) return;
  }
}

/** Bytes rich in what varints and keys are made of: continuation bits, group keys, small lengths. */
const byte = fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constantFrom(0x80, 0xff, 0x01, 0x0b, 0x0c, 0x13, 0x14, 0x0a, 0x02, 0x00));
const steps = fc.array(
  fc.oneof(
    fc.constantFrom<Step>("tag", "uint32", "uint64", "bool"),
    fc.record({ skip: fc.integer({ min: 0, max: 7 }) as fc.Arbitrary<WireType>, fieldNumber: fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined }) }),
  ),
  { maxLength: 12 },
);

describe("WireReader reads as protobuf-es's BinaryReader reads", () => {
  it("any bytes, in any window of a larger buffer, step by step", () => {
    fc.assert(
      fc.property(fc.array(byte, { maxLength: 40 }), fc.nat(), fc.nat(), steps, (bytes, a, b, chosen) => {
        const buffer = Uint8Array.from(bytes);
        const end = bytes.length === 0 ? 0 : b % (bytes.length + 1);
        const start = end === 0 ? 0 : a % (end + 1);
        assertReadAlike(buffer, start, end, chosen);
      }),
      { numRuns: 20_000 },
    );
  });

  it("varints of every length, up to the 10-byte limit and past it", () => {
    for (let length = 1; length <= 11; length++) {
      for (const last of [0x00, 0x01, 0x0f, 0x10, 0x7f]) {
        const bytes = [...Array.from({ length: length - 1 }, () => 0xff), last, 0x2a];
        for (const step of ["uint32", "uint64", "bool", "tag", { skip: WireType.Varint }] as const) {
          assertReadAlike(Uint8Array.from(bytes), 0, bytes.length, [step]);
          assertReadAlike(Uint8Array.from(bytes), 0, length - 1, [step]); // cut short
        }
      }
    }
  });

  it("groups: nested, mismatched, unterminated, and deeper than 100 levels", () => {
    const start = (n: number) => (n << 3) | WireType.StartGroup;
    const end = (n: number) => (n << 3) | WireType.EndGroup;
    const cases = [
      [start(1), 0x08, 0x05, end(1)],
      [start(1), start(2), end(2), end(1)],
      [start(1), end(2)],
      [start(1), 0x08],
      [...Array.from({ length: 101 }, () => start(1)), ...Array.from({ length: 101 }, () => end(1))],
      [...Array.from({ length: 100 }, () => start(1)), ...Array.from({ length: 100 }, () => end(1))],
    ];
    for (const bytes of cases) assertReadAlike(Uint8Array.from(bytes), 0, bytes.length, ["tag", { skip: WireType.StartGroup, fieldNumber: 1 }, "tag"]);
  });

  it("never reads the bytes past its window: they may be another field's", () => {
    // A varint whose continuation runs into the next field, and a length that reaches past the window.
    const buffer = Uint8Array.from([0x08, 0x96, 0x01, 0x12, 0x05, 0x61, 0x62, 0x63, 0x64, 0x65]);
    assertReadAlike(buffer, 0, 2, ["tag", "uint32"]);
    assertReadAlike(buffer, 3, 7, ["tag", { skip: WireType.LengthDelimited }]);
    const reader = new WireReader(buffer, 0, 2);
    reader.tag();
    assert.throws(() => reader.uint32(), /premature EOF/);
    // Ten continuation bytes in the buffer, five in the window: cut short there, not too long a varint.
    const run = new Uint8Array(12).fill(0xff);
    for (const step of ["uint32", "uint64", { skip: WireType.Varint }] as const) {
      assertReadAlike(run, 0, 5, [step]);
      assert.throws(() => stepOf(step)(new WireReader(run, 0, 5) as WireReader & BinaryReader), /premature EOF/);
    }
  });
});
