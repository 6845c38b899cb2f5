import { appendFile, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import {
  digestOf,
  type RemoteAction,
  type SecretName,
  sha256,
  shellQuote,
} from "../../../infra/plan/provision.js";
import { lastLines, run } from "./run.js";

// The second executor of the remote sequence (infra/plan/provision.ts; the first is the Pulumi component):
// the same actions, in the same order, over SSH. Like Pulumi, an action runs when its inputs (command or
// content, triggers, the digest of the secret it is fed or triggered by) differ from the previous run's, or
// when there is no previous run; `force` runs everything, to prove that the steps themselves change nothing.

export type Secrets = Record<SecretName, string>;

export interface ActionOutcome {
  id: string;
  ran: boolean;
  seconds: number;
  /** Combined output (empty for actions fed a secret: their output is never kept). */
  output: string;
}

export interface ExecuteOptions {
  sshArgs: readonly string[];
  /**
   * The host's public key (`ssh-ed25519 <base64>`), pinned the way Pulumi's `connection.hostKey` pins it: every
   * action opens its own connection, and a host that shows another key gets no command and no file.
   */
  hostKey?: string;
  secrets: Secrets;
  /** Inputs of each action at the previous run (what Pulumi's state holds). */
  previous?: ReadonlyMap<string, string>;
  force?: boolean;
  /** Host-specific preparation right before an action (the box: load the locally made base image). */
  before?: Readonly<Record<string, () => Promise<void>>>;
  logFile?: string;
  say?: (line: string) => void;
  hostWaitMs?: number;
}

export interface ExecuteResult {
  outcomes: ActionOutcome[];
  inputs: Map<string, string>;
}

/** What makes an action run again: the digest Pulumi would compare. */
export function actionInputs(action: RemoteAction, secrets: Secrets): string {
  const parts: Record<string, string> = { triggers: action.triggers.join(",") };
  if (action.kind === "run") {
    parts.command = action.command;
    // Pulumi compares stdin as an input: a changed secret writes its file again.
    if (action.stdin) parts.stdin = sha256(secrets[action.stdin]);
    if (action.secretTriggers) parts.secret = sha256(secrets[action.secretTriggers]);
  } else if (action.kind === "copy") {
    parts.remotePath = action.remotePath;
    parts.content = action.content;
  } else {
    parts.remoteParent = action.remoteParent;
    parts.localDir = basename(action.localDir);
  }
  return digestOf(parts);
}

export class StepFailed extends Error {
  constructor(
    readonly step: string,
    readonly output: string,
    detail: string,
  ) {
    super(`step ${step} failed (${detail})${output ? `; its last lines:\n${lastLines(output)}` : ""}`);
  }
}

/** What ssh(1) says when the host's key is not the pinned one (or is of another type). */
export const HOST_KEY_REFUSED = /Host key verification failed|no matching host key type found/;

/** The alias the pinned key is filed under, whatever address the host is reached at. */
const PINNED_ALIAS = "wagate-pinned-host";

/**
 * ssh(1) options that pin `hostKey`, placed before the caller's (for each option ssh keeps the first value): a
 * known_hosts holding that key only, strict checking, that key's type only, and a connection shared only through
 * a control socket of its own, in a private directory made here. The first session opens that connection and
 * checks the pinned key; the next ones ride on it instead of each paying a new handshake and login (about 0.3 s
 * an action: most of a no-change run). A caller's own ControlPath is never used: its connection's key was checked
 * by someone else.
 */
export async function pinHostKey(hostKey: string): Promise<{ args: string[]; cleanup: () => Promise<void> }> {
  const [type = "", blob = ""] = hostKey.trim().split(/\s+/);
  if (!/^ssh-ed25519$/.test(type) || !/^[A-Za-z0-9+/]+={0,2}$/.test(blob))
    throw new Error(`hostKey must be "ssh-ed25519 <base64>", got ${JSON.stringify(hostKey.slice(0, 40))}`);
  const dir = await mkdtemp(join(tmpdir(), "wagate-known-hosts-"));
  const file = join(dir, "known_hosts");
  const control = join(dir, "control");
  await writeFile(file, `${PINNED_ALIAS} ${type} ${blob}\n`);
  return {
    args: [
      "-o",
      `UserKnownHostsFile=${file}`,
      "-o",
      "GlobalKnownHostsFile=/dev/null",
      "-o",
      "StrictHostKeyChecking=yes",
      "-o",
      `HostKeyAlias=${PINNED_ALIAS}`,
      "-o",
      `HostKeyAlgorithms=${type}`,
      "-o",
      "CheckHostIP=no",
      "-o",
      `ControlPath=${control}`,
      "-o",
      "ControlMaster=auto",
      "-o",
      "ControlPersist=60",
    ],
    cleanup: async () => {
      // Ends the shared connection (none if no session ever connected), then forgets the key.
      await run("ssh", ["-o", `ControlPath=${control}`, "-O", "exit", PINNED_ALIAS], { check: false });
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Consecutive file copies in one SSH session: the same files, written the same way (as the SSH user, each
 * replaced whole), without a connection round trip and an ssh process per file — most of a no-change run.
 */
async function performCopies(
  copies: ReadonlyArray<Extract<RemoteAction, { kind: "copy" }>>,
  options: ExecuteOptions,
): Promise<void> {
  const script = [
    "set -euo pipefail",
    ...copies.map(
      (c) =>
        `base64 -d > ${shellQuote(c.remotePath)} <<'WAGATE_COPY'\n${Buffer.from(c.content).toString("base64")}\nWAGATE_COPY`,
    ),
  ].join("\n");
  const r = await run("ssh", [...options.sshArgs, "--", "bash -s"], { input: `${script}\n`, check: false });
  if (r.code === 255 && HOST_KEY_REFUSED.test(r.stderr))
    throw new StepFailed(copies[0]?.id ?? "copy", r.stderr, "the host's key is not the pinned one");
  if (r.code !== 0) throw new StepFailed(copies[0]?.id ?? "copy", r.stderr, `exit ${r.code}`);
}

async function perform(action: RemoteAction, options: ExecuteOptions): Promise<string> {
  const ssh = (remote: string, input?: string | Buffer) =>
    run("ssh", [...options.sshArgs, "--", remote], { input, check: false });
  const refused = (code: number, stderr: string) => {
    if (code === 255 && HOST_KEY_REFUSED.test(stderr))
      throw new StepFailed(action.id, stderr, "the host's key is not the pinned one");
  };
  switch (action.kind) {
    case "copy": {
      // What CopyToRemote's SFTP does: the file written as the SSH user, who owns the bundle directories.
      const r = await ssh(`cat > ${shellQuote(action.remotePath)}`, action.content);
      refused(r.code, r.stderr);
      if (r.code !== 0) throw new StepFailed(action.id, r.stderr, `exit ${r.code}`);
      return "";
    }
    case "upload": {
      const tar = `tar -C ${shellQuote(dirname(action.localDir))} -cf - ${shellQuote(basename(action.localDir))}`;
      const remote = `tar -C ${shellQuote(action.remoteParent)} -xf -`;
      const r = await run(
        "bash",
        [
          "-c",
          `set -o pipefail; ${tar} | ssh ${options.sshArgs.map(shellQuote).join(" ")} -- ${shellQuote(remote)}`,
        ],
        {
          check: false,
        },
      );
      refused(r.code, r.stderr);
      if (r.code !== 0) throw new StepFailed(action.id, r.stderr, `exit ${r.code}`);
      return "";
    }
    case "run": {
      const secret = action.stdin ? options.secrets[action.stdin] : undefined;
      const deadline = Date.now() + (options.hostWaitMs ?? 120_000);
      for (;;) {
        const r = await ssh(action.command, secret);
        // A wrong key is final, even while waiting for the host: it will not become the right one.
        refused(r.code, r.stderr);
        // 255: ssh itself could not connect. Only the first action waits for the host to come up.
        if (r.code === 255 && action.waitForHost && Date.now() < deadline) {
          await sleep(500);
          continue;
        }
        const output = secret === undefined ? `${r.stdout}${r.stderr}` : "";
        if (r.code !== 0) throw new StepFailed(action.id, output, `exit ${r.code}`);
        return output;
      }
    }
  }
}

export async function executeActions(
  actions: readonly RemoteAction[],
  options: ExecuteOptions,
): Promise<ExecuteResult> {
  if (options.hostKey === undefined) return executeUnpinned(actions, options);
  const pin = await pinHostKey(options.hostKey);
  try {
    return await executeUnpinned(actions, { ...options, sshArgs: [...pin.args, ...options.sshArgs] });
  } finally {
    await pin.cleanup();
  }
}

async function executeUnpinned(
  actions: readonly RemoteAction[],
  options: ExecuteOptions,
): Promise<ExecuteResult> {
  const outcomes: ActionOutcome[] = [];
  const inputs = new Map<string, string>();
  const isDue = (action: RemoteAction) => {
    const digest = actionInputs(action, options.secrets);
    inputs.set(action.id, digest);
    return options.force || options.previous?.get(action.id) !== digest;
  };
  for (let i = 0; i < actions.length; i++) {
    const action = actions[i] as RemoteAction;
    const due = isDue(action);
    if (!due) {
      outcomes.push({ id: action.id, ran: false, seconds: 0, output: "" });
      continue;
    }
    if (action.kind === "copy" && !options.before?.[action.id]) {
      // This copy and the due copies right after it, in one session.
      const batch = [action];
      for (
        let next = actions[i + 1];
        next?.kind === "copy" && !options.before?.[next.id];
        next = actions[i + 1]
      ) {
        if (!isDue(next)) break;
        batch.push(next);
        i++;
      }
      const started = performance.now();
      await performCopies(batch, options);
      const seconds = (performance.now() - started) / 1000 / batch.length;
      for (const c of batch) outcomes.push({ id: c.id, ran: true, seconds, output: "" });
      if (options.logFile)
        await appendFile(
          options.logFile,
          `== ${batch.length} copies (${(seconds * batch.length).toFixed(1)} s)\n`,
        );
      continue;
    }
    const started = performance.now();
    await options.before?.[action.id]?.();
    const output = await perform(action, options);
    const seconds = (performance.now() - started) / 1000;
    outcomes.push({ id: action.id, ran: true, seconds, output });
    if (options.logFile)
      await appendFile(options.logFile, `== ${action.id} (${seconds.toFixed(1)} s)\n${output}`);
    if (action.kind === "run" && !action.id.startsWith("file-"))
      options.say?.(`  ${action.id.padEnd(24)} ${seconds.toFixed(1).padStart(6)} s`);
  }
  return { outcomes, inputs };
}
