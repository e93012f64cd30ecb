import type { Report, Row } from "./results.js";

/** The results as plain-text tables, one per section, then the targets. */
export function formatTables(report: Report): string {
  const lines: string[] = [];
  for (const section of [...new Set(report.rows.map((row) => row.section))]) {
    const rows = report.rows.filter((row) => row.section === section);
    lines.push("", `## ${section}`, "");
    const table = [["scenario", "system", "value", "ratio", "p50 µs", "p99 µs", "p99.9 µs", "CPU µs client+server", "vs"]];
    for (const row of rows) {
      table.push([
        row.scenario,
        row.system,
        `${formatNumber(row.value)} ${row.unit}`,
        row.ratio === undefined ? "anchor" : `${row.ratio.toFixed(2)}×`,
        row.p50?.toString() ?? "",
        row.p99?.toString() ?? "",
        row.p999?.toString() ?? "",
        row.cpu ? formatCpu(row.cpu) : "",
        row.anchor ?? "",
      ]);
    }
    lines.push(...alignColumns(table));
    const notes = [...new Set(rows.flatMap((row) => (row.note ? [`${row.system}: ${row.note}`] : [])))];
    for (const note of notes) lines.push(`  note: ${note}`);
  }
  lines.push("", "## targets", "");
  const targets = [["target", "measured", "goal", "met", "how"]];
  for (const target of report.targets) {
    targets.push([target.name, `${target.ratio.toFixed(2)}×`, target.goal, target.met ? "yes" : "NO", target.detail]);
  }
  lines.push(...alignColumns(targets));
  return lines.join("\n");
}

function alignColumns(table: string[][]): string[] {
  const widths = table[0]!.map((_, column) => Math.max(...table.map((row) => row[column]!.length)));
  return table.map((row) => row.map((cell, column) => cell.padEnd(widths[column]!)).join("  ").trimEnd());
}

/** CPU per unit: "13.1+9.8" (client+server), or the client's alone. */
function formatCpu(cpu: { client: number; server?: number }): string {
  return cpu.server === undefined ? cpu.client.toFixed(1) : `${cpu.client.toFixed(1)}+${cpu.server.toFixed(1)}`;
}

export function formatNumber(value: number): string {
  return value >= 100 ? Math.round(value).toLocaleString("en") : value.toFixed(1);
}

interface Bar {
  label: string;
  value: number;
  text: string;
  color: string;
}

const COLORS: Record<string, string> = {
  ioredis: "#d62728",
  "ioredis auto-pipelining": "#ff9896",
  "ioredis pipeline": "#ff7f0e",
  "ioredis cache (sha256 key, JSON)": "#d62728",
  "ioredis auto-pipelining cache (sha256 key, JSON)": "#ff9896",
  "ioredis GET/SET (no key, no JSON)": "#f4c7c3",
  "@langchain/community RedisCache": "#8c564b",
  "llmcache unary": "#9ecae1",
  "llmcache auto-batched": "#1f77b4",
  "llmcache batch": "#08306b",
  "empty handler": "#aaaaaa",
  llmcache: "#1f77b4",
  "@langchain/core InMemoryCache": "#2ca02c",
  "llmcache InMemoryCache": "#1f77b4",
  "redis-server used_memory": "#d62728",
  "llmcache resident": "#1f77b4",
  "--max-bytes budget": "#aaaaaa",
  "llmcache peak resident": "#1f77b4",
};

/** An SVG a person can open: throughput bars and latency percentiles, each figure labelled. */
export function drawChart(report: Report): string {
  const rows = report.rows;
  const pick = (section: string, scenario: string) => rows.filter((row) => row.section === section && row.scenario === scenario);
  // A ratio is to the anchor the panel's title names; `titled` given, a ratio to any other anchor names it.
  const asBars = (selected: Row[], label = (row: Row) => row.system, titled?: string): Bar[] =>
    selected.map((row) => ({
      label: label(row),
      value: row.value,
      text: `${formatNumber(row.value)} ${row.unit}${row.ratio === undefined ? "" : ` (${row.ratio.toFixed(2)}×${titled !== undefined && row.anchor !== titled ? ` ${row.anchor}` : ""})`}`,
      color: COLORS[row.system] ?? "#777777",
    }));
  const panels: [string, Bar[]][] = [];
  for (const callers of ["1 caller", "64 callers"]) {
    panels.push([`Lookups per second · hit · 500 B · ${callers} (ratio to ioredis)`, asBars(pick("client", `lookup hit · 500 B · ${callers}`), undefined, "ioredis")]);
  }
  const latency = pick("client", "lookup hit · 500 B · 1 caller").flatMap((row) =>
    (["p50", "p99", "p999"] as const).map((percentile) => ({
      label: `${row.system} ${percentile === "p999" ? "p99.9" : percentile}`,
      value: row[percentile] ?? 0,
      text: `${row[percentile]} µs`,
      color: COLORS[row.system] ?? "#777777",
    })),
  );
  const batched = pick("client", "lookup hit · 500 B · 64 callers").filter((row) => row.system === "ioredis" || row.unit === "keys/s");
  if (batched.length > 0) panels.push(["Batched lookups, keys per second · hit · 500 B · 64 callers · 100 keys a call", asBars(batched, undefined, "")]);
  for (const bytes of ["500 B", "8 KiB"]) {
    const work = pick("cache work", `lookup hit · ${bytes} · 64 callers`);
    if (work.length > 0) panels.push([`Lookups per second returning Generation[] · hit · ${bytes} · 64 callers (ratio to ioredis + key + JSON)`, asBars(work)]);
  }
  panels.push(["Latency of one lookup · hit · 500 B · 1 caller (µs, lower is better)", latency]);
  const h2load = rows.filter((row) => row.section === "h2load");
  if (h2load.length > 0) panels.push([`h2load · ${h2load[0]!.scenario}`, asBars(h2load)]);
  panels.push(["In-process lookups per second · hit · 500 B", asBars(pick("in-process", "lookup hit · 500 B"))]);
  const burst = rows.filter((row) => row.section === "single flight");
  if (burst.length > 0) {
    panels.push([`Model calls per burst (lower is better) · ${burst[0]!.scenario}`, asBars(burst)]);
    const answered = burst.map((row) => ({ label: row.system, value: row.p99 ?? 0, text: `p99 ${((row.p99 ?? 0) / 1000).toFixed(1)} ms`, color: "#777777" }));
    panels.push(["Time to answer in the burst, p99 (ms, lower is better)", answered]);
  }
  const counts = rows.filter((row) => row.section === "entry count");
  if (counts.length > 0) {
    panels.push([`Lookups per second by entries held · ${counts[0]!.scenario}`, asBars(counts)]);
    const p99 = counts.map((row) => ({ label: `${row.system} p99`, value: row.p99 ?? 0, text: `${row.p99} µs`, color: "#1f77b4" }));
    panels.push(["Latency p99 by entries held (µs, lower is better)", p99]);
  }
  const churn = rows.filter((row) => row.section === "memory under churn" && row.anchor !== undefined);
  if (churn.length > 0) {
    const budget = rows.find((row) => row.section === "memory under churn" && row.anchor === undefined)!;
    const peaks = churn.map((row) => ({
      label: row.scenario.split(" · ")[1]!,
      value: row.value,
      text: `${row.value.toFixed(0)} MiB, budget + ${(row.value - budget.value).toFixed(0)} MiB`,
      color: COLORS[row.system]!,
    }));
    panels.push([`Peak resident memory under churn, --max-bytes ${budget.value} MiB, Node's default flags (lower is better)`, peaks]);
  }
  const memory = rows.filter((row) => row.section === "memory");
  if (memory.length > 0) panels.push([`Memory per entry (lower is better) · ${memory[0]!.scenario}`, asBars(memory)]);

  const width = 960;
  const labelWidth = 300;
  const barHeight = 20;
  let y = 40;
  const parts: string[] = [
    `<text x="16" y="24" font-size="16" font-weight="bold">llmcache benchmark · ${escape(report.startedAt)}${report.quick ? " · quick run" : ""} · ${report.machine.cpus} CPUs · Node ${escape(report.machine.node)}</text>`,
  ];
  for (const [title, bars] of panels.filter(([, bars]) => bars.length > 0)) {
    parts.push(`<text x="16" y="${y + 18}" font-size="14" font-weight="bold">${escape(title)}</text>`);
    y += 28;
    const max = Math.max(...bars.map((bar) => bar.value), 1);
    for (const bar of bars) {
      const length = Math.max(1, ((width - labelWidth - 220) * bar.value) / max);
      parts.push(
        `<text x="${labelWidth - 8}" y="${y + 15}" font-size="12" text-anchor="end">${escape(bar.label)}</text>`,
        `<rect x="${labelWidth}" y="${y + 2}" width="${length.toFixed(1)}" height="${barHeight - 4}" fill="${bar.color}"/>`,
        `<text x="${(labelWidth + length + 6).toFixed(1)}" y="${y + 15}" font-size="12">${escape(bar.text)}</text>`,
      );
      y += barHeight;
    }
    y += 16;
  }
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y + 10}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    ...parts,
    "</svg>",
    "",
  ].join("\n");
}

function escape(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}
