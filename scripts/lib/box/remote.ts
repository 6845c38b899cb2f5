import { shellQuote } from "../../../infra/plan/provision.js";
import { run } from "./run.js";

// Ad-hoc commands in the box as root, over the same SSH connection the executor uses (what an operator would
// type after `ssh admin@host`). For checks and figures only: provisioning goes through the executor.

export type BoxShell = (script: string, options?: { check?: boolean }) => Promise<string>;

export function boxShell(sshArgs: readonly string[]): BoxShell {
  return async (script, options = {}) => {
    const r = await run(
      "ssh",
      [...sshArgs, "--", `sudo -n bash -c ${shellQuote(`set -euo pipefail; ${script}`)}`],
      {
        check: options.check ?? true,
        label: `in the box: ${script.slice(0, 80)}`,
      },
    );
    return r.stdout;
  };
}
