import { remote } from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { planProvision, remoteActions, type StagedContext, sha256 } from "../plan/provision.js";
import type { HostBundle } from "../render/bundle.js";

export interface ProvisionArgs {
  host: pulumi.Input<string>;
  user: string;
  privateKey: pulumi.Input<string>;
  /** The host's public key (`ssh-ed25519 <base64>`): a host that shows another key gets nothing. */
  hostKey: pulumi.Input<string>;
  /** Replacing the instance must provision the new one from scratch. */
  instanceId: pulumi.Input<string>;
  bundle: HostBundle;
  /** The gateway's env file (secrets): stdin of one command, nowhere else. */
  gatewayEnv: pulumi.Output<string>;
  /** Present when the image is built on the host. */
  buildContext: StagedContext | undefined;
  /** What must exist before the host is reached (the DNS record the certificate step needs). */
  dependsOn: pulumi.Resource[];
}

export const SSH_WAIT = "20m";
export const STEP_TIMEOUT = "30m";

/**
 * The Pulumi executor of the remote sequence (plan/provision.ts): one resource per action, its `after` as
 * dependencies, its triggers prefixed by the instance id (a new VM starts over). Triggers hold digests only, so
 * an unchanged second `pulumi up` runs nothing, and a changed file re-runs exactly the steps that use it.
 */
export class Provision extends pulumi.ComponentResource {
  constructor(name: string, args: ProvisionArgs, opts?: pulumi.ComponentResourceOptions) {
    super("wagate:provision:Provision", name, {}, opts);
    const connection = {
      host: args.host,
      user: args.user,
      privateKey: args.privateKey,
      hostKey: args.hostKey,
      perDialTimeout: 10,
    };
    const envDigest = pulumi.secret(args.gatewayEnv.apply(sha256));
    const created = new Map<string, pulumi.Resource>();

    for (const action of remoteActions(planProvision(args.bundle), args.user, args.buildContext)) {
      const after = action.after.map((id) => created.get(id) as pulumi.Resource);
      const options = {
        parent: this,
        dependsOn: action.after.length === 0 ? args.dependsOn : after,
      };
      const triggers = [args.instanceId, ...action.triggers];
      let resource: pulumi.Resource;
      switch (action.kind) {
        case "copy":
          resource = new remote.CopyToRemote(
            `${name}-${action.id}`,
            {
              connection,
              source: new pulumi.asset.StringAsset(action.content),
              remotePath: action.remotePath,
              triggers,
            },
            options,
          );
          break;
        case "upload":
          resource = new remote.CopyToRemote(
            `${name}-${action.id}`,
            {
              connection,
              // Relative to the project root, Pulumi's working directory: the same path on every machine.
              source: new pulumi.asset.FileArchive(action.localDir),
              remotePath: action.remoteParent,
              triggers,
            },
            options,
          );
          break;
        case "run": {
          const timeout = action.waitForHost ? SSH_WAIT : STEP_TIMEOUT;
          resource = new remote.Command(
            `${name}-${action.id}`,
            {
              // Booting refuses connections for a while, and dial retries have no delay: dial until the timeout.
              connection: action.waitForHost ? { ...connection, dialErrorLimit: -1 } : connection,
              create: action.command,
              addPreviousOutputInEnv: false,
              ...(action.stdin ? { stdin: args.gatewayEnv, logging: "none" as const } : {}),
              triggers: action.secretTriggers ? [...triggers, envDigest] : triggers,
            },
            {
              ...options,
              customTimeouts: { create: timeout, update: timeout },
              ...(action.stdin ? { additionalSecretOutputs: ["stdout", "stderr"] } : {}),
            },
          );
          break;
        }
      }
      created.set(action.id, resource);
    }
    this.registerOutputs({});
  }
}
