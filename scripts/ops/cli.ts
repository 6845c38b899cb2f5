import { type ParseArgsConfig, parseArgs } from "node:util";

// The operator commands share one contract: `--help` prints usage and exits 0, a bad flag or value prints one
// line and exits 2, any other failure prints one line and exits 1. Stack traces never reach the operator.

/** A mistake in how the command was called: one line, exit code 2. */
export class UsageError extends Error {}

type Options = NonNullable<ParseArgsConfig["options"]>;

export interface ParsedCli {
  values: Record<string, string | boolean | string[] | boolean[] | undefined>;
  positionals: string[];
}

/** `parseArgs` in strict mode, with its multi-sentence errors turned into one short line. */
export function parseCli(argv: readonly string[], options: Options, allowPositionals = true): ParsedCli {
  try {
    const { values, positionals } = parseArgs({ args: [...argv], options, allowPositionals, strict: true });
    return { values: values as ParsedCli["values"], positionals };
  } catch (error) {
    const code = (error as { code?: string }).code;
    const message = (error as Error).message;
    const flag = /'(-[^']*)'/.exec(message)?.[1] ?? "";
    if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") throw new UsageError(`unknown option ${flag}`);
    if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
      throw new UsageError(
        /argument missing/.test(message) ? `${flag} needs a value` : `bad value for ${flag}`,
      );
    }
    if (code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL") throw new UsageError("unexpected argument");
    throw new UsageError(message.split("\n")[0] ?? "bad arguments");
  }
}

/** A whole number within [min, max] given as a flag, or the default; anything else is a usage error. */
export function intFlag(value: unknown, name: string, fallback: number, min = 0, max = 1e12): number {
  if (value === undefined) return fallback;
  if (typeof value !== "string" || !/^\d+$/.test(value))
    throw new UsageError(`--${name} must be a whole number`);
  const n = Number(value);
  if (n < min || n > max) throw new UsageError(`--${name} must be between ${min} and ${max}`);
  return n;
}

export function stringFlag(value: unknown): string | undefined {
  return typeof value === "string" ? value : undefined;
}

/**
 * Runs a command's main function as the process: sets the exit code and turns errors into one line on stderr.
 * `main` returns the exit code.
 */
export function runCommand(name: string, main: () => Promise<number>): void {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      const message = error instanceof Error ? error.message : String(error);
      process.stderr.write(
        `${name}: ${message.split("\n")[0]}${error instanceof UsageError ? " (see --help)" : ""}\n`,
      );
      process.exitCode = error instanceof UsageError ? 2 : 1;
    },
  );
}
