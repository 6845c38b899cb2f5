import { createHash } from "node:crypto";
import { posix } from "node:path";
import type { HostBundle } from "../render/bundle.js";

// What the provisioning does to a host, as data: which files go where, which command runs as root in which
// order, and when each one must run again. The Pulumi component (components/provision.ts) turns this into
// @pulumi/command resources; a second executor (the Debian box over SSH) can run the same plan, so the
// sequence exists once.

export const sha256 = (text: string | Buffer) => createHash("sha256").update(text).digest("hex");

/**
 * One digest over named contents: path and content hash, sorted by path, length-delimited, so that neither
 * the order of the map nor a path/content boundary can make two different sets collide.
 */
export function digestOf(contents: Readonly<Record<string, string>>): string {
  const lines = Object.keys(contents)
    .sort()
    .map((path) => `${path.length}:${path}:${sha256(contents[path] ?? "")}`);
  return sha256(lines.join("\n"));
}

/** POSIX single-quoting: the command is data for the remote shell, whatever it contains. */
export function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'"'"'`)}'`;
}

/** Runs a bundle step as root from the bundle directory (the SSH user is Debian's `admin`, with sudo). */
export function asRoot(command: string, cwd: string): string {
  return `sudo -n bash -c ${shellQuote(`set -euo pipefail; cd ${shellQuote(cwd)}; ${command}`)}`;
}

export interface FileCopy {
  /** Path inside the bundle. */
  path: string;
  remotePath: string;
  content: string;
  /** Pulumi resource name suffix (unique in the bundle). */
  resourceSuffix: string;
}

export interface StepPlan {
  name: string;
  resourceSuffix: string;
  /** The remote command line (no secret: bundle steps never hold one). */
  command: string;
  /** Digest of everything the step uses: the step runs again when, and only when, this changes. */
  trigger: string;
  uses: string[];
}

export interface ProvisionPlan {
  remoteDir: string;
  /** Directories the files are copied into (made, owned by the SSH user, before any copy). */
  directories: string[];
  copies: FileCopy[];
  steps: StepPlan[];
}

const suffixOf = (text: string) =>
  text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-|-$/g, "");

function checkRelative(path: string): void {
  if (
    path === "" ||
    path.startsWith("/") ||
    path.split("/").some((p) => p === ".." || p === "." || p === "")
  ) {
    throw new Error(`bundle path ${JSON.stringify(path)} must be relative, without . or .. segments`);
  }
}

/**
 * Plans the copies and steps of a bundle. `external` holds digests of inputs that are not bundle files but
 * that a step may list in `uses` (the gateway's build context); a step using anything else is an error, so a
 * forgotten input cannot silently leave a step stale.
 */
export function planProvision(
  bundle: HostBundle,
  external: Readonly<Record<string, string>> = {},
): ProvisionPlan {
  if (!bundle.remoteDir.startsWith("/"))
    throw new Error(`bundle remoteDir ${bundle.remoteDir} must be absolute`);
  const seen = new Map<string, string>();
  const unique = (kind: string, key: string) => {
    const suffix = suffixOf(key);
    const previous = seen.get(`${kind}:${suffix}`);
    if (previous !== undefined)
      throw new Error(`${kind} ${key} and ${previous} map to the same resource name`);
    seen.set(`${kind}:${suffix}`, key);
    return suffix;
  };

  const paths = Object.keys(bundle.files).sort();
  const copies = paths.map((path) => {
    checkRelative(path);
    return {
      path,
      remotePath: posix.join(bundle.remoteDir, path),
      content: bundle.files[path] ?? "",
      resourceSuffix: unique("file", path),
    };
  });
  const directories = [
    ...new Set([bundle.remoteDir, ...copies.map((c) => posix.dirname(c.remotePath))]),
  ].sort();

  const steps = bundle.steps.map((step) => {
    const used: Record<string, string> = {};
    for (const use of step.uses) {
      const file = bundle.files[use];
      const digest = file !== undefined ? sha256(file) : external[use];
      if (digest === undefined) throw new Error(`step ${step.name} uses ${use}, which is not in the bundle`);
      used[use] = digest;
    }
    return {
      name: step.name,
      resourceSuffix: unique("step", step.name),
      command: asRoot(step.command, bundle.remoteDir),
      trigger: digestOf(used),
      uses: [...step.uses],
    };
  });
  return { remoteDir: bundle.remoteDir, directories, copies, steps };
}

/**
 * The first remote command: returns once SSH answers and cloud-init has finished (exit 2 is "done, with
 * recoverable errors", which Debian's images report for harmless datasource warnings), then makes the bundle's
 * directories, owned by the SSH user so that SFTP can write into them.
 */
export function readyCommand(plan: ProvisionPlan, sshUser: string): string {
  const dirs = plan.directories.map(shellQuote).join(" ");
  return [
    "cloud-init status --wait >/dev/null || [ $? -eq 2 ]",
    `sudo -n install -d -m 0755 -o ${shellQuote(sshUser)} -g ${shellQuote(sshUser)} ${dirs}`,
  ].join(" && ");
}

/**
 * Writes the gateway's env file from stdin, 0600 root from its first byte (umask before the file exists,
 * rename into place). The secret travels only on stdin: not in the command line, not in a file copied with
 * SFTP's default mode. The gateway step, whose triggers include the file's digest, restarts the container.
 */
export function envFileCommand(envFile: string): string {
  const tmp = `${envFile}.new`;
  const script = [
    "set -euo pipefail",
    // Leave an existing directory's mode alone: other files there (the backup settings) have their readers.
    `[ -d ${shellQuote(posix.dirname(envFile))} ] || install -d -m 0755 ${shellQuote(posix.dirname(envFile))}`,
    "umask 077",
    `cat > ${shellQuote(tmp)}`,
    `chmod 0600 ${shellQuote(tmp)}`,
    `mv -f ${shellQuote(tmp)} ${shellQuote(envFile)}`,
  ].join("; ");
  return `sudo -n bash -c ${shellQuote(script)}`;
}
