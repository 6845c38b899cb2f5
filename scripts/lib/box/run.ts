import { spawn } from "node:child_process";

// Runs a host command to completion, capturing its output; a failure names the command and its last lines.

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  input?: string | Buffer;
  /** Throw when the exit code is not 0 (default true). */
  check?: boolean;
  /** What to call the command in an error (default: its first words). Never include secrets. */
  label?: string;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

export function lastLines(text: string, n = 20): string {
  return text.trimEnd().split("\n").slice(-n).join("\n");
}

export function run(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["pipe", "pipe", "pipe"], env: options.env ?? process.env });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    const timer =
      options.timeoutMs === undefined
        ? undefined
        : setTimeout(() => child.kill("SIGKILL"), options.timeoutMs);
    child.on("error", (error) => {
      if (timer) clearTimeout(timer);
      reject(error);
    });
    child.on("close", (code, signal) => {
      if (timer) clearTimeout(timer);
      const result = {
        code: code ?? (signal ? 128 : 1),
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
      };
      if (options.check !== false && result.code !== 0) {
        const label = options.label ?? [command, ...args.slice(0, 3)].join(" ");
        reject(
          new Error(
            `${label} failed (exit ${signal ?? result.code}):\n${lastLines(`${result.stdout}\n${result.stderr}`)}`,
          ),
        );
      } else resolve(result);
    });
    child.stdin.on("error", () => undefined);
    child.stdin.end(options.input ?? "");
  });
}
