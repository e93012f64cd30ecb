import { readFileSync } from "node:fs";

/**
 * The version in the package's package.json, read when asked. It sits three
 * levels above this module, dist/src/cli/, both in the repository and where
 * npm installs the package.
 */
export function packageVersion(): string {
  const { version } = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version?: unknown };
  if (typeof version !== "string") throw new Error("package.json has no version");
  return version;
}
