import { createHash } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TokenSpec {
  name: string;
  token: string;
  read?: string[];
  write?: string[];
  clear?: boolean;
  stats?: boolean;
}

/** Writes an auth file (YAML) for these tokens, storing only their SHA-256; returns its path. */
export function writeAuthFile(tokens: TokenSpec[], path = join(mkdtempSync(join(tmpdir(), "llmcache-auth-")), "auth.yaml")): string {
  const lines = ["tokens:"];
  for (const { name, token, read = [], write = [], clear = false, stats = false } of tokens) {
    lines.push(
      `  - name: ${name}`,
      `    sha256: ${createHash("sha256").update(token).digest("hex")}`,
      `    read: ${JSON.stringify(read)}`,
      `    write: ${JSON.stringify(write)}`,
      `    clear: ${clear}`,
      `    stats: ${stats}`,
    );
  }
  writeFileSync(path, `${lines.join("\n")}\n`);
  return path;
}
