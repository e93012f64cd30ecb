import assert from "node:assert/strict";
import { status as Status } from "@grpc/grpc-js";
import type { BlockingReply } from "../../src/client/blocking-protocol.js";
import { ENTRY_TOO_LARGE_REASON, EntryTooLargeError } from "../../src/engine/entry-too-large-error.js";
import { TooManyLeaseWaitersError } from "../../src/engine/too-many-lease-waiters-error.js";
import { TooManyNamespacesError } from "../../src/engine/too-many-namespaces-error.js";
import { DecodeError } from "../../src/rpc/codec.js";
import { CacheError, statusName, type StatusName } from "../../src/rpc/errors.js";
import {
  callFailure,
  carriesStatus,
  fromFailure,
  fromStatus,
  REASON_TRAILER,
  toClientFailure,
  toFailure,
  toStatus,
  type Failure,
  type StatusCarrier,
} from "../../src/rpc/status-mapping.js";
import { LimitExceededError } from "../../src/rpc/limit-exceeded-error.js";

const PATH = "/llmcache.v1.CacheService/Update";
const METHOD = "Update";

/** Every gRPC status code, OK (0) to UNAUTHENTICATED (16). */
const CODES = Object.values(Status).filter((code): code is Status => typeof code === "number");

// Every error class the server answers with a status of its own: TypeScript
// checks here that each has the StatusCarrier shape (the engine's classes
// declare it without importing the interface).
const carriers: StatusCarrier[] = [
  new DecodeError("x"),
  new LimitExceededError("x"),
  new EntryTooLargeError("x"),
  new TooManyNamespacesError(1),
  new TooManyLeaseWaitersError("maxWaiters", 1),
  new CacheError("NOT_FOUND", "x"),
];

/** What a server throws, and what the client must be told for it. */
const SERVER_ERRORS: { kind: string; error: Error; failure: Failure }[] = [
  {
    kind: "DecodeError",
    error: new DecodeError("cannot decode llmcache.v1.LookupRequest: premature EOF"),
    failure: { code: Status.INVALID_ARGUMENT, message: "cannot decode llmcache.v1.LookupRequest: premature EOF", reason: "" },
  },
  {
    kind: "EntryTooLargeError",
    error: EntryTooLargeError.forBudget(2048, 1024, "team-a"),
    failure: {
      code: Status.RESOURCE_EXHAUSTED,
      message: 'entry too large: 2048 bytes accounted, more than the byte budget of namespace "team-a" of 1024',
      reason: "entry_too_large",
    },
  },
  {
    kind: "LimitExceededError",
    error: new LimitExceededError("updates[3]", new LimitExceededError("prompt is 9, over the limit of 8 (--max-prompt-bytes)")),
    failure: { code: Status.RESOURCE_EXHAUSTED, message: "updates[3]: prompt is 9, over the limit of 8 (--max-prompt-bytes)", reason: "" },
  },
  {
    kind: "TooManyNamespacesError",
    error: new TooManyNamespacesError(3),
    failure: {
      code: Status.RESOURCE_EXHAUSTED,
      message: "too many namespaces: 3 namespaces hold entries, the most allowed (--max-namespaces)",
      reason: "",
    },
  },
  {
    kind: "TooManyLeaseWaitersError (in all)",
    error: new TooManyLeaseWaitersError("maxWaiters", 10),
    failure: {
      code: Status.RESOURCE_EXHAUSTED,
      message: "too many lookups waiting for a lease's fill: 10 wait in all, the most allowed (--max-lease-waiters)",
      reason: "",
    },
  },
  {
    kind: "TooManyLeaseWaitersError (per pair)",
    error: new TooManyLeaseWaitersError("maxWaitersPerPair", 2),
    failure: {
      code: Status.RESOURCE_EXHAUSTED,
      message: "too many lookups waiting for a lease's fill: 2 wait for this pair, the most allowed (--max-lease-waiters-per-pair)",
      reason: "",
    },
  },
  ...CODES.map((code) => ({
    kind: `CacheError ${statusName(code)}`,
    error: new CacheError(code, `a handler's ${statusName(code)}`),
    failure: { code, message: `a handler's ${statusName(code)}`, reason: "" },
  })),
];

/** What a client error must keep through every crossing. */
function identity(error: Error) {
  const { code, grpcCode, reason } = error as Partial<CacheError> & { reason?: string };
  return { class: error.constructor, name: error.name, code, grpcCode, message: error.message, reason };
}

/** The blocking path: the worker's failure, posted as the worker posts it, and the caller's error. */
function acrossThreads(error: unknown): Error {
  const reply = structuredClone({ id: 1, ok: false, ...toClientFailure(error) } satisfies BlockingReply);
  assert.equal(reply.ok, false);
  return fromFailure(reply);
}

/** A server's status, through the trailers, as the client reads it (what callUnary does). */
function throughStatus(failure: Failure, cause?: unknown): CacheError | EntryTooLargeError {
  const sent = toStatus(failure);
  const received = fromStatus(sent);
  return callFailure(METHOD, received.code, received.message, received.reason, cause);
}

function noLog(path: string, error: unknown): never {
  assert.fail(`unexpected log for ${path}: ${String(error)}`);
}

describe("the status mapping", () => {
  it("has a StatusCarrier for each of the server's error classes", () => {
    for (const error of carriers) assert.ok(carriesStatus(error), error.constructor.name);
  });

  describe("error → failure → status → error", () => {
    for (const { kind, error, failure } of SERVER_ERRORS) {
      it(`${kind}: ${statusName(failure.code)}${failure.reason ? ` with the reason ${failure.reason}` : ""}, the message kept`, () => {
        assert.deepEqual(toFailure(PATH, error, noLog), failure);

        const sent = toStatus(toFailure(PATH, error, noLog));
        assert.equal(sent.code, failure.code);
        assert.equal(sent.details, failure.message);
        assert.deepEqual(sent.metadata.get(REASON_TRAILER), failure.reason ? [failure.reason] : []);
        assert.deepEqual(fromStatus(sent), failure);

        const received = throughStatus(failure, error);
        const tooLarge = failure.code === Status.RESOURCE_EXHAUSTED && failure.reason === ENTRY_TOO_LARGE_REASON;
        assert.equal(received.constructor, tooLarge ? EntryTooLargeError : CacheError);
        assert.equal(received.code, statusName(failure.code));
        assert.equal(received.message, `${METHOD} failed: ${statusName(failure.code)}: ${failure.message}`);
        assert.equal((received as { reason?: string }).reason, tooLarge ? ENTRY_TOO_LARGE_REASON : undefined);
        assert.equal(received.cause, error);

        // The client's error again through the blocking worker: the same class, code, message and reason.
        assert.deepEqual(identity(acrossThreads(received)), identity(received));
        // And a client's error met again by the mapping (a proxy, a test server) keeps its status.
        assert.deepEqual(toFailure(PATH, received, noLog), {
          code: failure.code,
          message: received.message,
          reason: tooLarge ? ENTRY_TOO_LARGE_REASON : "",
        });
      });
    }
  });

  describe("status → error → failure → error, for every status code and reason", () => {
    for (const code of CODES) {
      for (const reason of ["", ENTRY_TOO_LARGE_REASON, "some_other_reason"]) {
        it(`${statusName(code)}${reason ? ` with the reason ${reason}` : ""}`, () => {
          const failure: Failure = { code, message: `the server's ${statusName(code)}`, reason };
          assert.deepEqual(fromStatus(toStatus(failure)), failure);

          const error = throughStatus(failure);
          const tooLarge = code === Status.RESOURCE_EXHAUSTED && reason === ENTRY_TOO_LARGE_REASON;
          assert.ok(error instanceof (tooLarge ? EntryTooLargeError : CacheError));
          assert.equal(error.code, statusName(code) satisfies StatusName);
          assert.equal(error.message, `${METHOD} failed: ${statusName(code)}: the server's ${statusName(code)}`);
          if (error instanceof CacheError) assert.equal(error.grpcCode, code);

          const posted = toClientFailure(error);
          assert.deepEqual(posted, { code, message: error.message, reason: tooLarge ? ENTRY_TOO_LARGE_REASON : "" });
          assert.deepEqual(identity(acrossThreads(error)), identity(error));
          assert.deepEqual(identity(fromFailure(posted)), identity(error));
        });
      }
    }
  });

  it("names the method and the status in a client's message, and keeps the cause", () => {
    const cause = new Error("the transport's own");
    const error = callFailure("Lookup", Status.UNAVAILABLE, "No connection established", "", cause);
    assert.ok(error instanceof CacheError);
    assert.equal(error.message, "Lookup failed: UNAVAILABLE: No connection established");
    assert.equal(error.cause, cause);
    const tooLarge = callFailure("Update", Status.RESOURCE_EXHAUSTED, "entry too large: 9 bytes", ENTRY_TOO_LARGE_REASON);
    assert.ok(tooLarge instanceof EntryTooLargeError);
    assert.equal(tooLarge.message, "Update failed: RESOURCE_EXHAUSTED: entry too large: 9 bytes");
  });

  describe("an error that does not carry its status", () => {
    const unexpected: [string, unknown][] = [
      ["an Error", new Error("the store's secret: sk-123")],
      ["a TypeError", new TypeError("cannot read properties of undefined")],
      ["a Node.js system error", Object.assign(new Error("ENOENT: no such file"), { code: "ENOENT" })],
      ["an Error whose code is a status's number", Object.assign(new Error("x"), { code: "0" })],
      ["an Error whose code is no status", Object.assign(new Error("x"), { code: "toString" })],
      ["an Error with a status name but a reason that is no string", Object.assign(new Error("x"), { code: "NOT_FOUND", reason: 1 })],
      ["an object shaped like a carrier, not an Error", { code: "NOT_FOUND", message: "not an error" }],
      ["a string", "thrown as a string"],
      ["undefined", undefined],
    ];
    for (const [what, error] of unexpected) {
      it(`${what}: INTERNAL "internal error" on the server, the original logged`, () => {
        const logged: [string, unknown][] = [];
        const failure = toFailure(PATH, error, (path, original) => logged.push([path, original]));
        assert.deepEqual(failure, { code: Status.INTERNAL, message: "internal error", reason: "" });
        assert.equal(logged.length, 1);
        assert.equal(logged[0]![0], PATH);
        assert.equal(logged[0]![1], error);

        const received = throughStatus(failure);
        assert.ok(received instanceof CacheError);
        assert.equal(received.message, `${METHOD} failed: INTERNAL: internal error`);
      });
    }

    it("logs to the console by default, naming the path", () => {
      const error = new Error("boom");
      const original = console.error;
      const lines: unknown[][] = [];
      console.error = (...args: unknown[]) => lines.push(args);
      try {
        assert.deepEqual(toFailure(PATH, error), { code: Status.INTERNAL, message: "internal error", reason: "" });
      } finally {
        console.error = original;
      }
      assert.deepEqual(lines, [[`llmcache: ${PATH} failed:`, error]]);
    });

    it("is INTERNAL with its own text on a client, whose error it is", () => {
      const error = new TypeError("Metadata value must not contain a newline");
      assert.deepEqual(toClientFailure(error), { code: Status.INTERNAL, message: String(error), reason: "" });
      const rethrown = acrossThreads(error);
      assert.ok(rethrown instanceof CacheError);
      assert.equal(rethrown.code, "INTERNAL");
      assert.equal(rethrown.message, "TypeError: Metadata value must not contain a newline");
    });
  });
});
