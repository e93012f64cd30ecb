import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import * as messages from "@langchain/core/messages";
import type { BaseMessage } from "@langchain/core/messages";
import type { ChatGeneration } from "@langchain/core/outputs";
import { CacheClient, type Generation } from "../../src/index.js";
import { LangChainCache } from "../../src/langchain/index.js";
import { chatGenerations } from "../fixtures/generations.js";
import { startServerProcess, type ServerProcess } from "../helpers/server-process.js";

const REPO = fileURLToPath(new URL("../../../", import.meta.url));
const PYTHON = `${REPO}.venv/bin/python`;
const CROSS_LANGUAGE = `${REPO}test/python/cross_language.py`;
const PLAIN_VALUES = `${REPO}test/python/plain_values.py`;
/** Messages of every class, with every field, as both languages build them: {"class": "AIMessage", "fields": {...}}. */
const SPEC = `${REPO}test/fixtures/cross-language-messages.json`;
const LLM_STRING = "cross-language";

interface MessageSpec {
  class: string;
  fields: Record<string, unknown>;
}

function build(spec: MessageSpec): BaseMessage {
  const messageClass = (messages as unknown as Record<string, new (fields: unknown) => BaseMessage>)[spec.class];
  assert.ok(messageClass, `LangChain JS has no class ${spec.class}`);
  return new messageClass(structuredClone(spec.fields));
}

async function python(mode: "store" | "check", address: string, namespace: string): Promise<{ code: number; problems: string[]; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(PYTHON, [CROSS_LANGUAGE, mode, address, namespace, SPEC], { timeout: 60_000 });
    return { code: 0, problems: JSON.parse(stdout) as string[], stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, problems: failed.stdout ? (JSON.parse(failed.stdout) as string[]) : [], stderr: failed.stderr };
  }
}

/**
 * The spec as LangChain Python holds it: Python gives every tool message a
 * status ("success" unless told otherwise) where JS leaves it unset, so the
 * message Python stores carries one.
 */
function withPythonDefaults(spec: MessageSpec): MessageSpec {
  if (!spec.class.startsWith("ToolMessage") || spec.fields.status !== undefined) return spec;
  return { ...spec, fields: { ...spec.fields, status: "success" } };
}

describe("one wire form for LangChain JS and LangChain Python", function () {
  this.timeout(60_000);
  const specs = JSON.parse(readFileSync(SPEC, "utf8")) as MessageSpec[];
  let server: ServerProcess;
  let client: CacheClient;

  before(async () => {
    server = await startServerProcess();
    client = new CacheClient({ address: server.address });
  });
  after(async () => {
    await client.close();
    await server.stop();
  });

  it("LangChain Python reads what LangChain JS stored as equal (==) messages of the same classes", async () => {
    const cache = new LangChainCache(client, { namespace: "js-to-python" });
    for (const [index, spec] of specs.entries()) {
      const message = build(spec);
      await cache.update(`js:${index}`, LLM_STRING, [{ text: typeof message.content === "string" ? message.content : "", message } as ChatGeneration]);
    }
    const { code, problems, stderr } = await python("check", server.address, "js-to-python");
    assert.deepEqual(problems, [], stderr);
    assert.equal(code, 0, stderr);
  });

  it("LangChain JS reads what LangChain Python stored as messages of the same classes, toDict() equal", async () => {
    const stored = await python("store", server.address, "python-to-js");
    assert.equal(stored.code, 0, stored.stderr);
    const cache = new LangChainCache(client, { namespace: "python-to-js" });
    for (const [index, spec] of specs.entries()) {
      const found = (await cache.lookup(`py:${index}`, LLM_STRING)) as ChatGeneration[] | null;
      assert.equal(found?.length, 1, `py:${index} (${spec.class}) is stored`);
      const expected = build(withPythonDefaults(spec));
      assert.equal(found![0]!.message.constructor.name, expected.constructor.name, `py:${index}`);
      assert.deepEqual(found![0]!.message.toDict(), expected.toDict(), `py:${index} (${spec.class})`);
    }
  });

  // Plain data, through the clients without LangChain: every field either
  // client keeps, such as the other fields of tool calls and of the usage.
  describe("plain values, through CacheClient in both languages", () => {
    const plainPython = (mode: "read" | "store", prompt: string, input?: string) =>
      new Promise<string>((resolve, reject) => {
        const child = execFile(PYTHON, [PLAIN_VALUES, mode, server.address, "plain", prompt], { timeout: 60_000 }, (error, stdout, stderr) =>
          error ? reject(new Error(`plain_values.py ${mode}: ${error.message}; stderr: ${stderr}`)) : resolve(stdout),
        );
        child.stdin!.end(input ?? "");
      });

    for (const [name, generations] of Object.entries(chatGenerations)) {
      it(`Python reads what TypeScript stored, and TypeScript what Python stored: ${name}`, async () => {
        await client.aupdate(`ts:${name}`, "plain-values", generations, { namespace: "plain" });
        assert.deepEqual(JSON.parse(await plainPython("read", `ts:${name}`)), toPython(generations), "Python reads TypeScript's");
        await plainPython("store", `py:${name}`, JSON.stringify(toPython(generations)));
        assert.deepEqual(await client.alookup(`py:${name}`, "plain-values", { namespace: "plain" }), generations, "TypeScript reads Python's");
      });
    }
  });
});

/** Generations as the Python client names their fields: generation_info for generationInfo. */
function toPython(generations: Generation[]): unknown[] {
  return generations.map(({ generationInfo, ...rest }) => (generationInfo === undefined ? rest : { ...rest, generation_info: generationInfo }));
}
