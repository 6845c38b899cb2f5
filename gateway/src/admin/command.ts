// What every operator command shares: a command gets its arguments and the environment, writes its answer to
// stdout (what a script may capture: a token, JSON) and its remarks to stderr, and returns the exit code. A
// mistake in the call is a UsageError (exit 2); any other refusal is an AdminError (exit 1). Both are one line.

import { type ParseArgsConfig, parseArgs } from "node:util";

export class AdminError extends Error {}
export class UsageError extends Error {}

export interface AdminIo {
  env: Record<string, string | undefined>;
  out: (text: string) => void;
  err: (text: string) => void;
}

export interface AdminCommand {
  name: string;
  summary: string;
  usage: string;
  run: (args: string[], io: AdminIo) => Promise<number>;
}

/** `parseArgs`, strict; a mistake in the call becomes a one-line UsageError (parseArgs' messages may run on). */
export function parseCommandArgs<const T extends Omit<ParseArgsConfig, "args" | "strict">>(
  args: string[],
  config: T,
): ReturnType<typeof parseArgs<T & { args: string[]; strict: true }>> {
  try {
    return parseArgs({ ...config, args, strict: true });
  } catch (error) {
    throw new UsageError((error as Error).message.split("\n")[0]);
  }
}
