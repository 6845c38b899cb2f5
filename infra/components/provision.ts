import { posix } from "node:path";
import { remote } from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { envFileCommand, planProvision, readyCommand, sha256, shellQuote } from "../plan/provision.js";
import { GATEWAY_BUILD_CONTEXT, GATEWAY_ENV_FILE, GATEWAY_STEP, type HostBundle } from "../render/bundle.js";

export interface BuildContext {
  /** Local directory (relative to the project root) holding the staged context, named `src-<digest>`. */
  stagedDir: string;
  digest: string;
}

export interface ProvisionArgs {
  host: pulumi.Input<string>;
  user: string;
  privateKey: pulumi.Input<string>;
  /** Replacing the instance must provision the new one from scratch. */
  instanceId: pulumi.Input<string>;
  bundle: HostBundle;
  /** The gateway's env file (secrets): stdin of one command, nowhere else. */
  gatewayEnv: pulumi.Output<string>;
  /** Present when the image is built on the host. */
  buildContext: BuildContext | undefined;
  /** What must exist before the host is reached (the DNS record the certificate step needs). */
  dependsOn: pulumi.Resource[];
}

/** Where staged build contexts land (owned by the SSH user) before they replace GATEWAY_BUILD_CONTEXT as root. */
export const REMOTE_STAGE_DIR = "/opt/wagate/stage";

export const SSH_WAIT = "20m";
export const STEP_TIMEOUT = "30m";

/**
 * Runs the host bundle's steps over SSH: wait for the VM, copy the bundle, write the env file, stage the
 * build context, then each step in order. Every command carries triggers: the instance id (a new VM starts
 * over) and the digest of what the step uses, so an unchanged second `pulumi up` runs nothing.
 */
export class Provision extends pulumi.ComponentResource {
  readonly steps: remote.Command[];

  constructor(name: string, args: ProvisionArgs, opts?: pulumi.ComponentResourceOptions) {
    super("wagate:provision:Provision", name, {}, opts);
    const plan = planProvision(args.bundle);
    const connection = { host: args.host, user: args.user, privateKey: args.privateKey, perDialTimeout: 10 };
    const common = { connection, addPreviousOutputInEnv: false };

    const ready = new remote.Command(
      `${name}-ready`,
      {
        ...common,
        // Booting takes a while and refuses connections meanwhile: keep dialling until the timeout.
        connection: { ...connection, dialErrorLimit: -1 },
        create: readyCommand(
          { ...plan, directories: [...plan.directories, ...(args.buildContext ? [REMOTE_STAGE_DIR] : [])] },
          args.user,
        ),
        triggers: [args.instanceId],
      },
      { parent: this, dependsOn: args.dependsOn, customTimeouts: { create: SSH_WAIT, update: SSH_WAIT } },
    );
    const afterReady = { parent: this, dependsOn: [ready] };

    const copies = plan.copies.map(
      (copy) =>
        new remote.CopyToRemote(
          `${name}-file-${copy.resourceSuffix}`,
          {
            connection,
            source: new pulumi.asset.StringAsset(copy.content),
            remotePath: copy.remotePath,
            triggers: [args.instanceId],
          },
          afterReady,
        ),
    );

    const envFile = new remote.Command(
      `${name}-gateway-env`,
      {
        ...common,
        create: envFileCommand(GATEWAY_ENV_FILE),
        stdin: args.gatewayEnv,
        logging: "none",
        triggers: [args.instanceId],
      },
      { ...afterReady, additionalSecretOutputs: ["stdout", "stderr"] },
    );

    const before: pulumi.Resource[] = [...copies, envFile];
    const gatewayInputs: pulumi.Input<string>[] = [pulumi.secret(args.gatewayEnv.apply(sha256))];
    if (args.buildContext) {
      const { stagedDir, digest } = args.buildContext;
      const staged = posix.join(REMOTE_STAGE_DIR, posix.basename(stagedDir));
      const upload = new remote.CopyToRemote(
        `${name}-build-context`,
        {
          connection,
          source: new pulumi.asset.FileArchive(stagedDir),
          remotePath: REMOTE_STAGE_DIR,
          triggers: [args.instanceId, digest],
        },
        afterReady,
      );
      const install = new remote.Command(
        `${name}-build-context-install`,
        {
          ...common,
          create: `sudo -n bash -c ${shellQuote(installContextScript(staged))}`,
          triggers: [args.instanceId, digest],
        },
        { parent: this, dependsOn: [upload] },
      );
      before.push(install);
      gatewayInputs.push(digest);
    }

    let previous: pulumi.Resource[] = before;
    this.steps = plan.steps.map((step) => {
      const command = new remote.Command(
        `${name}-${step.resourceSuffix}`,
        {
          ...common,
          create: step.command,
          triggers: [args.instanceId, step.trigger, ...(step.name === GATEWAY_STEP ? gatewayInputs : [])],
        },
        { parent: this, dependsOn: previous, customTimeouts: { create: STEP_TIMEOUT, update: STEP_TIMEOUT } },
      );
      previous = [command];
      return command;
    });
    this.registerOutputs({});
  }
}

/** Replaces the build context atomically with the staged copy (root-owned) and drops older stages. */
export function installContextScript(staged: string): string {
  const target = GATEWAY_BUILD_CONTEXT;
  return [
    "set -euo pipefail",
    `rm -rf ${shellQuote(`${target}.new`)}`,
    `cp -a ${shellQuote(`${staged}/.`)} ${shellQuote(`${target}.new`)}`,
    `chown -R root:root ${shellQuote(`${target}.new`)}`,
    `rm -rf ${shellQuote(target)}`,
    `mv ${shellQuote(`${target}.new`)} ${shellQuote(target)}`,
    `find ${shellQuote(REMOTE_STAGE_DIR)} -mindepth 1 -maxdepth 1 ! -name ${shellQuote(posix.basename(staged))} -exec rm -rf {} +`,
  ].join("; ");
}
