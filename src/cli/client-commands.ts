import { parseArgs } from "node:util";
import { CacheClient, DEFAULT_ADDRESS } from "../client/cache-client.js";
import type { Generation } from "../generation.js";
import { integerSetting, parsedSetting, parsingFlags, readSettingFile, setting, UsageError } from "./settings.js";
import { parseDuration } from "./units.js";
import { sha256 } from "../server/auth/token-file.js";

const connectionFlags = {
  address: { type: "string" },
  "timeout-ms": { type: "string" },
  token: { type: "string" },
  "tls-ca": { type: "string" },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
  "tls-server-name": { type: "string" },
  tls: { type: "boolean" },
} as const;

type ConnectionValues = { [K in keyof typeof connectionFlags]?: (typeof connectionFlags)[K]["type"] extends "boolean" ? boolean : string };

/** `llmcache lookup PROMPT LLM_STRING`: prints the generations as JSON, or null on a miss. */
export async function lookupCommand(args: string[]): Promise<void> {
  const { values, positionals } = parsingFlags(() =>
    parseArgs({
      args,
      options: { ...connectionFlags, namespace: { type: "string" }, bypass: { type: "boolean" } },
      allowPositionals: true,
    }),
  );
  const [prompt, llmString] = keyArguments("lookup", positionals, false);
  await withClient(values, async (client) => {
    console.log(JSON.stringify(await client.alookup(prompt, llmString, { namespace: values.namespace, bypass: values.bypass })));
  });
}

/**
 * `llmcache update PROMPT LLM_STRING [TEXT...]`: stores one generation per
 * TEXT, or the JSON list given with --generations.
 */
export async function updateCommand(args: string[]): Promise<void> {
  const { values, positionals } = parsingFlags(() =>
    parseArgs({
      args,
      options: {
        ...connectionFlags,
        generations: { type: "string" },
        namespace: { type: "string" },
        ttl: { type: "string" },
        "never-expires": { type: "boolean" },
        "no-store": { type: "boolean" },
        "if-absent": { type: "boolean" },
      },
      allowPositionals: true,
    }),
  );
  const [prompt, llmString, ...texts] = keyArguments("update", positionals, true);
  let generations: Generation[] = texts.map((text) => ({ text }));
  if (values.generations !== undefined) {
    if (texts.length > 0) throw new UsageError("give either TEXT arguments or --generations, not both");
    generations = parseJson(values.generations, "--generations") as Generation[];
  }
  if (values.ttl !== undefined && values["never-expires"]) throw new UsageError("give either --ttl or --never-expires, not both");
  const options = {
    namespace: values.namespace,
    ttlMs: values["never-expires"] ? Infinity : values.ttl === undefined ? undefined : parsedSetting({ raw: values.ttl, source: "--ttl" }, parseDuration),
    noStore: values["no-store"],
  };
  await withClient(values, async (client) => {
    // With --if-absent, whether it stored: true or false.
    if (values["if-absent"]) console.log(JSON.stringify(await client.aupdateIfAbsent(prompt, llmString, generations, options)));
    else await client.aupdate(prompt, llmString, generations, options);
  });
}

/** `llmcache clear`: removes every entry of a namespace, or of all. */
export async function clearCommand(args: string[]): Promise<void> {
  const { values } = parsingFlags(() =>
    parseArgs({ args, options: { ...connectionFlags, namespace: { type: "string" }, "all-namespaces": { type: "boolean" } } }),
  );
  if (values.namespace !== undefined && values["all-namespaces"]) throw new UsageError("give either --namespace or --all-namespaces, not both");
  await withClient(values, (client) => client.aclear({ namespace: values.namespace, allNamespaces: values["all-namespaces"] }));
}

/** `llmcache hash-token`: reads a token on standard input and prints its SHA-256, for an auth file. */
export async function hashTokenCommand(args: string[]): Promise<void> {
  parsingFlags(() => parseArgs({ args, options: {} }));
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  const token = Buffer.concat(chunks).toString("utf8").trim();
  if (token.length === 0 || /\s/.test(token)) throw new UsageError("give one token, without spaces, on standard input");
  console.log(sha256(token).toString("hex"));
}

/** `llmcache stats`: prints the server's statistics as JSON. */
export async function statsCommand(args: string[]): Promise<void> {
  const { values } = parsingFlags(() => parseArgs({ args, options: connectionFlags }));
  await withClient(values, async (client) => console.log(JSON.stringify(await client.astats(), null, 2)));
}

async function withClient(values: ConnectionValues, use: (client: CacheClient) => Promise<void>): Promise<void> {
  const given = (flag: keyof ConnectionValues & string) => setting(flag, values[flag] as string | undefined);
  const timeout = given("timeout-ms");
  const file = (flag: "tls-ca" | "tls-cert" | "tls-key") => {
    const path = given(flag);
    return path && readSettingFile(path).toString("utf8");
  };
  const [ca, cert, key] = [file("tls-ca"), file("tls-cert"), file("tls-key")];
  const serverName = given("tls-server-name")?.raw;
  const tls = values.tls || /^(1|true|yes)$/i.test(process.env.LLMCACHE_TLS ?? "") || ca || cert || key || serverName;
  const client = new CacheClient({
    address: given("address")?.raw ?? DEFAULT_ADDRESS,
    timeoutMs: timeout ? integerSetting(timeout, positive) : undefined,
    token: given("token")?.raw,
    tls: tls ? { ca, cert, key, serverName } : undefined,
  });
  try {
    await use(client);
  } finally {
    await client.close();
  }
}

function keyArguments(command: string, positionals: string[], more: boolean): [string, string, ...string[]] {
  if (positionals.length < 2 || (!more && positionals.length > 2)) {
    const expected = more ? "PROMPT, LLM_STRING and optionally TEXT..." : "PROMPT and LLM_STRING";
    throw new UsageError(`${command} takes ${expected}, got ${positionals.length} arguments`);
  }
  return positionals as [string, string, ...string[]];
}

function parseJson(text: string, source: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${source} is not valid JSON: ${error instanceof Error ? error.message : error}`);
  }
}

function positive(n: number): number {
  if (n <= 0) throw new RangeError("must be greater than 0");
  return n;
}
