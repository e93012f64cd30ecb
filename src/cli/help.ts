/** One flag's line in a command's --help. */
export interface FlagHelp {
  /** The name of its value, such as SIZE; none for a switch. */
  value?: string;
  /** What it does, in a few words. */
  about: string;
  /** What applies when it is not given, where something does. */
  default?: string;
}

export interface CommandHelp {
  /** The synopsis, after "Usage: ". */
  usage: string;
  /** What the command does and prints, a line or two. */
  about: string;
  flags: Record<string, FlagHelp>;
  /** Said after the flags. */
  notes?: string;
}

/** A command's --help text: its synopsis, then one line per flag, with its default. */
export function commandHelp({ usage, about, flags, notes }: CommandHelp): string {
  const entries = Object.entries(flags).map(([flag, help]) => ({ name: `--${flag}${help.value ? ` ${help.value}` : ""}`, help }));
  const width = Math.max(0, ...entries.map(({ name }) => name.length)) + 2;
  const lines = entries.map(({ name, help }) => `  ${name.padEnd(width)}${help.about}${help.default ? ` (default: ${help.default})` : ""}`);
  return [`Usage: ${usage}`, "", about, ...(lines.length > 0 ? ["", "Flags:", ...lines] : []), ...(notes ? ["", notes] : [])].join("\n");
}
