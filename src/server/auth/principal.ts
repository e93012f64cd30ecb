import { asKeyBytes } from "../../rpc/key-bytes.js";

/**
 * What a call may do: the rights of the token it presented (or every right,
 * when the server has no tokens). Namespaces are asked about as the server
 * holds them (see rpc/key-bytes.ts).
 */
export interface Principal {
  /** The token's name from the auth file, for logs; "anonymous" without authentication. */
  readonly name: string;
  canRead(namespace: string): boolean;
  canWrite(namespace: string): boolean;
  /** Clearing a namespace takes the clear right and write on it; clearing all takes write on every namespace ("*"). */
  canClear(namespace: string | undefined): boolean;
  canReadStats(): boolean;
}

/** The principal of every call when the server has no auth file. */
export const ANYONE: Principal = {
  name: "anonymous",
  canRead: () => true,
  canWrite: () => true,
  canClear: () => true,
  canReadStats: () => true,
};

/** Rights as the auth file grants them: namespace lists where "*" is any namespace. */
export interface Rights {
  name: string;
  read: readonly string[];
  write: readonly string[];
  clear: boolean;
  stats: boolean;
}

export function principalOf(rights: Rights): Principal {
  const read = namespaceSet(rights.read);
  const write = namespaceSet(rights.write);
  return {
    name: rights.name,
    canRead: (namespace) => read(namespace) || write(namespace),
    canWrite: write,
    canClear: (namespace) => rights.clear && (namespace === undefined ? rights.write.includes("*") : write(namespace)),
    canReadStats: () => rights.stats,
  };
}

/** The auth file's names, as text, turned into the form requests' namespaces are compared in. */
function namespaceSet(names: readonly string[]): (namespace: string) => boolean {
  if (names.includes("*")) return () => true;
  const set = new Set<string>(names.map(asKeyBytes));
  return (namespace) => set.has(namespace);
}
