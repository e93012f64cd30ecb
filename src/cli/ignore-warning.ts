/**
 * Drops one kind of Node warning, by its code, and lets every other through.
 * grpc-js gives TLS the address's host as the server name, and Node warns
 * (DEP0123, on two lines of stderr) when that is an IP address: a client
 * command reaching 127.0.0.1 over TLS is no mistake of its user's, and its
 * errors are one line.
 */
export function ignoreWarning(code: string): void {
  const emitWarning = process.emitWarning;
  process.emitWarning = function (this: unknown, warning: string | Error, ...rest: unknown[]): void {
    const [typeOrOptions, codeArgument] = rest;
    const given =
      typeof typeOrOptions === "object" && typeOrOptions !== null
        ? (typeOrOptions as { code?: unknown }).code
        : warning instanceof Error
          ? (warning as NodeJS.ErrnoException).code
          : codeArgument;
    if (given === code) return;
    (emitWarning as (...args: unknown[]) => void).call(process, warning, ...rest);
  } as typeof process.emitWarning;
}
