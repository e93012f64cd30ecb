/**
 * Figures the reliability checks report, printed under the summary by
 * summary-reporter.cjs (which runs in the same process and reads them from
 * the same global).
 */
const figures: Map<string, string | number> = ((globalThis as Record<string, unknown>).llmcacheReliabilityFigures ??= new Map()) as Map<
  string,
  string | number
>;

export function record(name: string, value: string | number): void {
  figures.set(name, value);
}

export function add(name: string, amount: number): void {
  figures.set(name, Number(figures.get(name) ?? 0) + amount);
}
