import { parseArgs } from "node:util";
import { CacheClient, DEFAULT_ADDRESS, MAX_TIMEOUT_MS } from "../client/cache-client.js";
import type { Generation } from "../generation.js";
import { parseGenerationsFlag } from "./generations-flag.js";
import { commandHelp, type FlagHelp } from "./help.js";
import { ignoreWarning } from "./ignore-warning.js";
import { checkAddresses, envFlag, integerSetting, parsedSetting, parsingFlags, setting, UsageError, type Setting } from "./settings.js";
import { checkTlsFiles, readPemFile } from "./tls-files.js";
import { parseDuration } from "./units.js";
import { sha256 } from "../server/auth/token-file.js";
import { isSendableToken } from "../rpc/channel.js";

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

const CONNECTION_HELP: Record<keyof typeof connectionFlags, FlagHelp> = {
  address: {
    value: "HOST:PORT",
    about: "server to reach; [IPv6]:PORT for an IPv6 address; several replicas of one cache separated by commas",
    default: DEFAULT_ADDRESS,
  },
  "timeout-ms": { value: "MS", about: "deadline of the call, in milliseconds", default: "5000" },
  token: { value: "TOKEN", about: "bearer token to send", default: "none" },
  tls: { about: "use TLS, trusting the system's roots", default: "plain text" },
  "tls-ca": { value: "FILE", about: "use TLS, trusting this PEM CA" },
  "tls-cert": { value: "FILE", about: "PEM client certificate for mutual TLS, with --tls-key" },
  "tls-key": { value: "FILE", about: "PEM private key of --tls-cert" },
  "tls-server-name": { value: "NAME", about: "name to expect in the server's certificate; implies TLS", default: "the address's host" },
};

const CONNECTION_NOTES =
  "The connection flags can also come from their environment variables, LLMCACHE_ and the flag in\n" +
  "capitals (--address: LLMCACHE_ADDRESS, --tls: LLMCACHE_TLS=1); a flag wins.";

const lookupFlags = { ...connectionFlags, namespace: { type: "string" }, bypass: { type: "boolean" } } as const;

export const lookupHelp = commandHelp({
  usage: "llmcache lookup [FLAG...] PROMPT LLM_STRING",
  about: "Looks up an entry; prints its generations as JSON, or null on a miss.",
  flags: {
    namespace: { value: "NS", about: "namespace to look in", default: '""' },
    bypass: { about: "skip the read: answer null, counted as a bypass rather than a miss" },
    ...CONNECTION_HELP,
  } satisfies Record<keyof typeof lookupFlags, FlagHelp>,
  notes: CONNECTION_NOTES,
});

const updateFlags = {
  ...connectionFlags,
  generations: { type: "string" },
  namespace: { type: "string" },
  ttl: { type: "string" },
  "never-expires": { type: "boolean" },
  "no-store": { type: "boolean" },
  "if-absent": { type: "boolean" },
} as const;

export const updateHelp = commandHelp({
  usage: "llmcache update [FLAG...] PROMPT LLM_STRING [TEXT...]",
  about: "Stores one generation per TEXT (none: an empty list, a hit), or those given with --generations.",
  flags: {
    generations: { value: "JSON", about: 'instead of TEXT, a JSON list of {"text", "generationInfo" or "generation_info", "message"}' },
    namespace: { value: "NS", about: "namespace to store in", default: '""' },
    ttl: { value: "DURATION", about: "how long the entry lives: 500ms, 30s, 10m, 1h, 7d", default: "the server's default TTL" },
    "never-expires": { about: "the entry lives for ever, whatever the server's default TTL" },
    "no-store": { about: "store nothing (the update is accepted and discarded)" },
    "if-absent": { about: "store only if no entry is there; print true if it stored, else false" },
    ...CONNECTION_HELP,
  } satisfies Record<keyof typeof updateFlags, FlagHelp>,
  notes: CONNECTION_NOTES,
});

const clearFlags = { ...connectionFlags, namespace: { type: "string" }, "all-namespaces": { type: "boolean" } } as const;

export const clearHelp = commandHelp({
  usage: "llmcache clear [FLAG...]",
  about: "Removes every entry of a namespace, or of all namespaces.",
  flags: {
    namespace: { value: "NS", about: "namespace to clear", default: '""' },
    "all-namespaces": { about: "clear every namespace" },
    ...CONNECTION_HELP,
  } satisfies Record<keyof typeof clearFlags, FlagHelp>,
  notes: CONNECTION_NOTES,
});

export const statsHelp = commandHelp({
  usage: "llmcache stats [FLAG...]",
  about: "Prints the server's statistics as JSON: entries, bytes, hits and misses, in total and per namespace.",
  flags: CONNECTION_HELP,
  notes: CONNECTION_NOTES,
});

export const hashTokenHelp = commandHelp({
  usage: "llmcache hash-token < TOKEN_FILE",
  about: "Reads one token on standard input and prints its SHA-256 in hex, for the sha256 of an auth file.",
  flags: {},
});

type ConnectionValues = { [K in keyof typeof connectionFlags]?: (typeof connectionFlags)[K]["type"] extends "boolean" ? boolean : string };

/** `llmcache lookup PROMPT LLM_STRING`: prints the generations as JSON, or null on a miss. */
export async function lookupCommand(args: string[]): Promise<void> {
  const { values, positionals } = parsingFlags(() =>
    parseArgs({ args, options: lookupFlags, allowPositionals: true }),
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
    parseArgs({ args, options: updateFlags, allowPositionals: true }),
  );
  const [prompt, llmString, ...texts] = keyArguments("update", positionals, true);
  let generations: Generation[] = texts.map((text) => ({ text }));
  if (values.generations !== undefined) {
    if (texts.length > 0) throw new UsageError("give either TEXT arguments or --generations, not both");
    generations = parseGenerationsFlag(values.generations);
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
    parseArgs({ args, options: clearFlags }),
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
  if (!isSendableToken(token)) throw new UsageError("give one token, of visible ASCII characters without spaces, on standard input");
  console.log(sha256(token).toString("hex"));
}

/** `llmcache stats`: prints the server's statistics as JSON. */
export async function statsCommand(args: string[]): Promise<void> {
  const { values } = parsingFlags(() => parseArgs({ args, options: connectionFlags }));
  await withClient(values, async (client) => console.log(JSON.stringify(await client.astats(), null, 2)));
}

async function withClient(values: ConnectionValues, use: (client: CacheClient) => Promise<void>): Promise<void> {
  ignoreWarning("DEP0123");
  const given = (flag: keyof ConnectionValues & string) => setting(flag, values[flag] as string | undefined);
  const timeout = given("timeout-ms");
  const file = (flag: "tls-ca" | "tls-cert" | "tls-key") => {
    const path = given(flag);
    return path && readPemFile(path);
  };
  const files = { ca: file("tls-ca"), cert: file("tls-cert"), key: file("tls-key") };
  if ((files.cert === undefined) !== (files.key === undefined)) throw new UsageError("give --tls-cert and --tls-key together");
  checkTlsFiles(files);
  const [ca, cert, key] = [files.ca, files.cert, files.key].map((read) => read?.pem.toString("utf8"));
  const serverName = given("tls-server-name")?.raw;
  const tls = values.tls || envFlag("LLMCACHE_TLS") || ca || cert || key || serverName;
  const client = new CacheClient({
    address: optionalAddress(given("address")) ?? DEFAULT_ADDRESS,
    timeoutMs: timeout ? integerSetting(timeout, (n) => atMostTimeout(positive(n))) : undefined,
    token: checkToken(given("token")),
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
    throw new UsageError(`${command} takes ${expected}, got ${positionals.length} argument${positionals.length === 1 ? "" : "s"}`);
  }
  return positionals as [string, string, ...string[]];
}

function optionalAddress(value: Setting | undefined): string | undefined {
  return value && parsedSetting(value, checkAddresses);
}

function positive(n: number): number {
  if (n <= 0) throw new RangeError("must be greater than 0");
  return n;
}

function atMostTimeout(ms: number): number {
  if (ms > MAX_TIMEOUT_MS) throw new RangeError(`must be at most ${MAX_TIMEOUT_MS} (24 days)`);
  return ms;
}

/** A token as the client sends it; a bad one is named by its setting, never echoed: it is a secret. */
function checkToken(token: Setting | undefined): string | undefined {
  if (token === undefined) return undefined;
  if (!isSendableToken(token.raw)) throw new UsageError(`invalid ${token.source}: a token is one word of visible ASCII characters, without spaces (not shown here)`);
  return token.raw;
}
