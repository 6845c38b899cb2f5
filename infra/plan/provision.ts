import { createHash } from "node:crypto";
import { posix } from "node:path";
import {
  EDGE_IDENTITY_KEY_FILE,
  EDGE_STEP,
  GATEWAY_BUILD_CONTEXT,
  GATEWAY_ENV_FILE,
  GATEWAY_STEP,
  type HostBundle,
} from "../render/bundle.js";

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
export function readyCommand(directories: readonly string[], sshUser: string): string {
  const dirs = directories.map(shellQuote).join(" ");
  return [
    // A host without cloud-init (a test box) is ready as soon as SSH answers.
    "if command -v cloud-init >/dev/null; then cloud-init status --wait >/dev/null || [ $? -eq 2 ]; fi",
    `sudo -n install -d -m 0755 -o ${shellQuote(sshUser)} -g ${shellQuote(sshUser)} ${dirs}`,
  ].join(" && ");
}

/**
 * Writes a secret file from stdin, 0600 root from its first byte (umask before the file exists, rename into
 * place). The secret travels only on stdin: not in the command line, not in a file copied with SFTP's default
 * mode. The step that reads it has the secret's digest among its triggers, so it runs again when it changes.
 */
export function secretFileCommand(path: string): string {
  const tmp = `${path}.new`;
  const script = [
    "set -euo pipefail",
    // Leave an existing directory's mode alone: other files there (the backup settings) have their readers.
    `[ -d ${shellQuote(posix.dirname(path))} ] || install -d -m 0755 ${shellQuote(posix.dirname(path))}`,
    "umask 077",
    `cat > ${shellQuote(tmp)}`,
    `chmod 0600 ${shellQuote(tmp)}`,
    `mv -f ${shellQuote(tmp)} ${shellQuote(path)}`,
  ].join("; ");
  return `sudo -n bash -c ${shellQuote(script)}`;
}

/**
 * The secrets an executor holds and feeds on stdin: the gateway's env file, and the edge's token key derived
 * from it (render/edge-identity-key.ts). Each is written to its file by one action and read by one step.
 */
export type SecretName = "gatewayEnv" | "edgeIdentityKey";

/** Where each secret is written on the host, by which action, and which step re-runs when it changes. */
export const SECRET_FILES: Readonly<Record<SecretName, { path: string; actionId: string; step: string }>> = {
  gatewayEnv: { path: GATEWAY_ENV_FILE, actionId: "gateway-env", step: GATEWAY_STEP },
  edgeIdentityKey: { path: EDGE_IDENTITY_KEY_FILE, actionId: "edge-identity-key", step: EDGE_STEP },
};

/**
 * Removes files the bundle no longer holds (a dropped nginx snippet must not linger where a glob would load it).
 * Runs as the SSH user, who owns the bundle directory.
 */
export function pruneCommand(remoteDir: string, paths: readonly string[]): string {
  const keep = paths.map(shellQuote).join(" ");
  const script = [
    "set -euo pipefail",
    `cd ${shellQuote(remoteDir)}`,
    // grep finding nothing to prune exits 1: that is the usual, successful case.
    `find . -type f -printf '%P\\n' | { grep -vxF -f <(printf '%s\\n' ${keep}) || true; } | while IFS= read -r f; do rm -f -- "$f"; done`,
    "find . -mindepth 1 -type d -empty -delete",
  ].join("; ");
  return `bash -c ${shellQuote(script)}`;
}

/** Where a staged build context lands (owned by the SSH user) before it replaces GATEWAY_BUILD_CONTEXT as root. */
export const REMOTE_STAGE_DIR = "/opt/wagate/stage";

/** Replaces the build context atomically with the staged copy (root-owned) and drops older stages. */
export function installContextScript(staged: string): string {
  const target = GATEWAY_BUILD_CONTEXT;
  const script = [
    "set -euo pipefail",
    `rm -rf ${shellQuote(`${target}.new`)}`,
    `cp -a ${shellQuote(`${staged}/.`)} ${shellQuote(`${target}.new`)}`,
    `chown -R root:root ${shellQuote(`${target}.new`)}`,
    `rm -rf ${shellQuote(target)}`,
    `mv ${shellQuote(`${target}.new`)} ${shellQuote(target)}`,
    `find ${shellQuote(REMOTE_STAGE_DIR)} -mindepth 1 -maxdepth 1 ! -name ${shellQuote(posix.basename(staged))} -exec rm -rf {} +`,
  ].join("; ");
  return `sudo -n bash -c ${shellQuote(script)}`;
}

/** The staged build context on this machine (a directory named `src-<digest>`) and its digest. */
export interface StagedContext {
  localDir: string;
  digest: string;
}

interface ActionBase {
  /** Unique, stable: the Pulumi resource name suffix, and what `after` refers to. */
  id: string;
  /** Ids of earlier actions that must have completed. */
  after: string[];
  /** Digests whose change makes the action run again (an executor adds its own, such as the instance id). */
  triggers: string[];
}

/**
 * What an executor does on the host, in order. `run`: a command line (nothing secret in it); with `stdin`, the
 * executor feeds the named secret on stdin and keeps the output out of its logs; with `secretTriggers`, it also
 * re-runs the action when that secret changes. `copy`: a text file. `upload`: a local directory, copied as a tree
 * into `remoteParent`.
 */
export type RemoteAction =
  | (ActionBase & {
      kind: "run";
      command: string;
      /** The first action: the host may still be booting, keep dialling. */
      waitForHost?: true;
      stdin?: SecretName;
      secretTriggers?: SecretName;
    })
  | (ActionBase & { kind: "copy"; remotePath: string; content: string })
  | (ActionBase & { kind: "upload"; localDir: string; remoteParent: string });

/**
 * The whole remote sequence — wait for the host, copy the bundle, write the secret files (SECRET_FILES), stage
 * the build context, run the steps — as one ordered list that both executors follow: the Pulumi component (one
 * resource per action, `after` as dependencies) and the Debian box (one action after the other over SSH).
 */
export function remoteActions(plan: ProvisionPlan, sshUser: string, context?: StagedContext): RemoteAction[] {
  const directories = [...plan.directories, ...(context ? [REMOTE_STAGE_DIR] : [])];
  const actions: RemoteAction[] = [
    {
      kind: "run",
      id: "ready",
      command: readyCommand(directories, sshUser),
      after: [],
      triggers: [],
      waitForHost: true,
    },
    ...plan.copies.map(
      (c): RemoteAction => ({
        kind: "copy",
        id: `file-${c.resourceSuffix}`,
        remotePath: c.remotePath,
        content: c.content,
        after: ["ready"],
        triggers: [],
      }),
    ),
    {
      kind: "run",
      id: "bundle-prune",
      command: pruneCommand(
        plan.remoteDir,
        plan.copies.map((c) => c.path),
      ),
      after: plan.copies.map((c) => `file-${c.resourceSuffix}`),
      triggers: [digestOf(Object.fromEntries(plan.copies.map((c) => [c.path, ""])))],
    },
    ...(Object.keys(SECRET_FILES) as SecretName[]).map(
      (secret): RemoteAction => ({
        kind: "run",
        id: SECRET_FILES[secret].actionId,
        command: secretFileCommand(SECRET_FILES[secret].path),
        stdin: secret,
        after: ["ready"],
        triggers: [],
      }),
    ),
  ];
  if (context) {
    const staged = posix.join(REMOTE_STAGE_DIR, posix.basename(context.localDir));
    actions.push(
      {
        kind: "upload",
        id: "build-context",
        localDir: context.localDir,
        remoteParent: REMOTE_STAGE_DIR,
        after: ["ready"],
        triggers: [context.digest],
      },
      {
        kind: "run",
        id: "build-context-install",
        command: installContextScript(staged),
        after: ["build-context"],
        triggers: [context.digest],
      },
    );
  }
  let previous = actions.filter((a) => a.id !== "ready").map((a) => a.id);
  for (const step of plan.steps) {
    const gateway = step.name === GATEWAY_STEP;
    const secret = (Object.keys(SECRET_FILES) as SecretName[]).find(
      (s) => SECRET_FILES[s].step === step.name,
    );
    actions.push({
      kind: "run",
      id: step.resourceSuffix,
      command: step.command,
      after: previous,
      triggers: [step.trigger, ...(gateway && context ? [context.digest] : [])],
      ...(secret ? { secretTriggers: secret } : {}),
    });
    previous = [step.resourceSuffix];
  }
  const ids = new Set<string>();
  for (const action of actions) {
    if (ids.has(action.id)) throw new Error(`two remote actions are named ${action.id}`);
    for (const dep of action.after)
      if (!ids.has(dep)) throw new Error(`${action.id} runs after unknown ${dep}`);
    ids.add(action.id);
  }
  return actions;
}
