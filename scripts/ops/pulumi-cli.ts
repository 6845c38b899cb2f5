import { spawn } from "node:child_process";

// Runs the Pulumi CLI with its output going straight to the operator's terminal. Arguments are passed as an
// array (no shell), and the environment (PULUMI_CONFIG_PASSPHRASE, AWS credentials) is inherited, never printed.

export function runPulumi(args: readonly string[], cwd: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn("pulumi", [...args], { cwd, stdio: ["ignore", "inherit", "inherit"] });
    child.once("error", (error: NodeJS.ErrnoException) =>
      reject(
        error.code === "ENOENT"
          ? new Error("the pulumi CLI is not on PATH: install it (https://www.pulumi.com/docs/install/)")
          : error,
      ),
    );
    child.once("close", (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}
