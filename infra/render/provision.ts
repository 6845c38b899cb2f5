import { readFileSync } from "node:fs";
import { shellQuote } from "./certbot.js";

// The provisioning script: a static bash file (provision.sh, next to this module, shellcheck-clean) plus
// `vars.sh`, rendered here from the stack's inputs. Keeping the logic static and the inputs in data means
// shellcheck checks exactly what runs, and a changed input changes only `vars.sh` or the data files.

/** The script, verbatim. */
export function provisionScript(): string {
  return readFileSync(new URL("./provision.sh", import.meta.url), "utf8");
}

/** Step names understood by provision.sh, in the order they must run. */
export const PROVISION_STEPS = [
  "packages",
  "data",
  "nginx",
  "certificate",
  "fail2ban",
  "gateway",
  "backups",
  "health",
] as const;
export type ProvisionStepName = (typeof PROVISION_STEPS)[number];

export type ShellValue = string | number | readonly string[];

/** `vars.sh`: bash assignments (arrays for lists), every value single-quoted. */
export function renderVars(vars: Record<string, ShellValue>): string {
  const lines = Object.entries(vars).map(([name, value]) => {
    if (!/^[A-Z][A-Z0-9_]*$/.test(name)) throw new Error(`vars.sh: ${name} is not a shell variable name`);
    if (Array.isArray(value)) return `${name}=(${value.map((v) => shellQuote(v)).join(" ")})`;
    return `${name}=${shellQuote(String(value))}`;
  });
  return `# Rendered by wagate (infra/render/provision.ts): the inputs of provision.sh. No secrets.
# shellcheck shell=bash disable=SC2034
${lines.join("\n")}
`;
}
