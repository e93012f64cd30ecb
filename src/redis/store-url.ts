/** Where a server keeps its entries, as `--store` names it. */
export type StoreLocation =
  | { kind: "memory" }
  /** One Redis (or Valkey): `url` is what the Redis client connects to. */
  | { kind: "redis"; url: string; tls: boolean; database: number; display: string }
  /** A Redis Cluster, found through any of `nodes`. */
  | { kind: "redis-cluster"; nodes: { host: string; port: number }[]; tls: boolean; display: string };

const USAGE = "expected memory, redis://HOST:PORT[/DB], rediss://HOST:PORT[/DB] or redis-cluster://HOST:PORT,HOST:PORT,...";

/** Parses `--store` (or LLMCACHE_STORE); throws a RangeError that says what it expected. */
export function parseStoreUrl(raw: string): StoreLocation {
  const text = raw.trim();
  if (text === "memory") return { kind: "memory" };
  const scheme = /^([a-z-]+):\/\//.exec(text)?.[1];
  if (scheme === "redis" || scheme === "rediss") return single(text, scheme === "rediss");
  if (scheme === "redis-cluster" || scheme === "rediss-cluster") return cluster(text, scheme === "rediss-cluster");
  throw new RangeError(USAGE);
}

function single(text: string, tls: boolean): StoreLocation {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new RangeError(`not a URL: ${USAGE}`);
  }
  if (!url.hostname) throw new RangeError(`no host: ${USAGE}`);
  const path = url.pathname.replace(/^\//, "");
  if (path !== "" && !/^\d+$/.test(path)) throw new RangeError("the database must be a number, as in redis://HOST:PORT/0");
  const database = path === "" ? 0 : Number(path);
  // The display leaves out any password the URL carries: it goes into logs and error messages.
  const display = `${url.protocol}//${url.host}${database === 0 ? "" : `/${database}`}`;
  return { kind: "redis", url: text, tls, database, display };
}

function cluster(text: string, tls: boolean): StoreLocation {
  const list = text.slice(text.indexOf("://") + 3);
  const nodes = list.split(",").map((node) => {
    const match = /^(\[[^\]]+\]|[^:/]+):(\d{1,5})$/.exec(node.trim());
    const port = Number(match?.[2]);
    if (!match || port < 1 || port > 65_535) throw new RangeError(`"${node}" is not HOST:PORT: ${USAGE}`);
    return { host: match[1]!.replace(/^\[|\]$/g, ""), port };
  });
  return { kind: "redis-cluster", nodes, tls, display: `${tls ? "rediss" : "redis"}-cluster://${list}` };
}
