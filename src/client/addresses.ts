/** host:port, [IPv6]:port, with a port from 1 to 65535. */
const HOST_PORT = /^(?:\[[0-9A-Fa-f:.]+(?:%[\w.-]+)?\]|[^\s:/,[\]]+):(\d{1,5})$/;
/** gRPC's dns target (its naming doc): "dns:", an optional "//" DNS server "/", then host:port. */
const DNS_TARGET = /^dns:(?:\/\/[^\s/,]*\/)?(.*)$/;

/**
 * The replicas named by CacheClientOptions.address: one host:port, several
 * separated by commas ("10.0.0.1:50051,10.0.0.2:50051"), or an array of them,
 * one each. A grpc-js "unix:PATH" target counts as one address, as the
 * command line's --address allows, and so does a gRPC "dns:" target
 * ("dns:///cache.internal:50051"; the port is required), whose records are
 * all used. Anything else is a TypeError naming the option and the item at
 * fault.
 */
export function parseAddresses(address: unknown): readonly string[] {
  let items: readonly unknown[];
  if (typeof address === "string") items = address.split(",");
  else if (Array.isArray(address)) items = address;
  else throw new TypeError(`address must be "host:port", several of them separated by commas, or an array of them, got ${describe(address)}`);
  if (items.length === 0 || address === "") throw new TypeError("address must name at least one host:port, got an empty list");
  const seen = new Set<string>();
  for (const item of items) {
    if (item === "") throw new TypeError(`address must not have an empty item, got ${JSON.stringify(address)}`);
    if (typeof item !== "string" || !isAddress(item)) {
      throw new TypeError(`address items must be host:port (such as "10.0.0.1:50051", "[::1]:50051" or "dns:///cache.internal:50051"), got ${describe(item)}`);
    }
    if (seen.has(item)) throw new TypeError(`address must not name a replica twice, got ${item} twice`);
    seen.add(item);
  }
  return Object.freeze([...seen]);
}

function isAddress(item: string): boolean {
  if (item.startsWith("unix:")) return item.length > "unix:".length && !item.includes(",");
  const hostPort = DNS_TARGET.exec(item)?.[1] ?? item;
  const port = HOST_PORT.exec(hostPort)?.[1];
  return port !== undefined && Number(port) >= 1 && Number(port) <= 65535;
}

function describe(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value) : Array.isArray(value) ? "an array" : String(value);
}
