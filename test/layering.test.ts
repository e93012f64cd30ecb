import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The layers of src/, lowest first, and what each may import from the
 * others: engine/ is the store and knows nothing of callers, options,
 * LangChain or gRPC; rpc/ knows the wire but not who serves or calls;
 * redis/ is the Redis backend, below the server that runs it.
 * An import that runs back up a layer fails here, naming the file.
 */
const SRC = fileURLToPath(new URL("../../src/", import.meta.url));

function importsOf(folder: string): { file: string; specifier: string }[] {
  return readdirSync(`${SRC}${folder}`, { recursive: true, encoding: "utf8" })
    .filter((file) => file.endsWith(".ts"))
    .flatMap((file) =>
      [...readFileSync(`${SRC}${folder}/${file}`, "utf8").matchAll(/^\s*(?:import|export)\b[^;]*?from\s+"([^"]+)"/gms)].map((match) => ({
        file: `${folder}/${file}`,
        specifier: match[1]!,
      })),
    );
}

/** Where under src/ a relative import lands, as a path from src/ ("server/request-limits.js"); "" for a package. */
function target({ file, specifier }: { file: string; specifier: string }): string {
  return specifier.startsWith(".") ? relative(SRC, resolve(SRC, dirname(file), specifier)) : "";
}

describe("the layers of src/", () => {
  it("engine/ imports nothing above it: no relative import leaves the folder", () => {
    const upward = importsOf("engine").filter((entry) => entry.specifier.startsWith(".") && !target(entry).startsWith("engine/"));
    assert.ok(importsOf("engine").length > 0, "the check reads engine/'s imports");
    assert.deepEqual(upward, []);
  });

  it("redis/ knows no caller: it imports nothing from server/, client/, cli/ or langchain/", () => {
    const above = importsOf("redis").filter((entry) => /^(server|client|cli|langchain)\//.test(target(entry)));
    assert.ok(importsOf("redis").length > 0, "the check reads redis/'s imports");
    assert.deepEqual(above, []);
  });

  it("rpc/ knows neither the server nor the client: it imports nothing from server/ or client/", () => {
    const above = importsOf("rpc").filter((entry) => /^(server|client|cli|langchain)\//.test(target(entry)));
    assert.ok(importsOf("rpc").length > 0, "the check reads rpc/'s imports");
    assert.deepEqual(above, []);
  });
});
