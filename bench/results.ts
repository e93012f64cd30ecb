/** One measured figure, with what it is compared against in the same run. */
export interface Row {
  /** Which comparison this row belongs to, e.g. "client". */
  section: string;
  /** What was measured, e.g. "lookup hit · 500 B · 64 callers". */
  scenario: string;
  system: string;
  /** The row the ratio divides by (same section and scenario); absent for an anchor itself. */
  anchor?: string;
  /** "ops/s", "keys/s", "req/s", "B/entry". */
  unit: string;
  value: number;
  /** value / anchor value; > 1 is better for rates, < 1 better for bytes. */
  ratio?: number;
  /** Latency of one call in microseconds, where measured. */
  p50?: number;
  p99?: number;
  p999?: number;
  /** CPU per unit of `unit` in µs, where measured: the client's (the bench's process) and the server's. */
  cpu?: { client: number; server?: number };
  note?: string;
}

export interface Target {
  name: string;
  /** The measured ratio, and the ratio it must reach. */
  ratio: number;
  goal: string;
  met: boolean;
  detail: string;
}

export interface Report {
  startedAt: string;
  quick: boolean;
  machine: { cpus: number; node: string; redis: string; h2load: string };
  rows: Row[];
  targets: Target[];
}

/** Fills in every row's ratio from its anchor row. */
export function withRatios(rows: Row[]): Row[] {
  return rows.map((row) => {
    if (!row.anchor) return row;
    const anchor = rows.find((r) => r.section === row.section && r.scenario === row.scenario && r.system === row.anchor);
    return anchor ? { ...row, ratio: row.value / anchor.value } : row;
  });
}

export function findRow(rows: Row[], section: string, scenario: string, system: string): Row {
  const row = rows.find((r) => r.section === section && r.scenario === scenario && r.system === system);
  if (!row) throw new Error(`no result for ${section} / ${scenario} / ${system}`);
  return row;
}

/** Writes a status line that replaces itself on a terminal, or a line per step elsewhere. */
export function progress(step: number, total: number, label: string): void {
  const line = `[${step}/${total}] ${label}`;
  if (process.stderr.isTTY) process.stderr.write(`\r\x1b[2K${line}`);
  else process.stderr.write(`${line}\n`);
}
