import { remote } from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { ebsDataDevicePath } from "../plan/data-volume.js";
import {
  planProvision,
  type RemoteAction,
  remoteActions,
  type SecretName,
  type StagedContext,
  sha256,
} from "../plan/provision.js";
import type { HostBundle } from "../render/bundle.js";

export interface ProvisionArgs {
  host: pulumi.Input<string>;
  user: string;
  privateKey: pulumi.Input<string>;
  /** The host's public key (`ssh-ed25519 <base64>`): a host that shows another key gets nothing. */
  hostKey: pulumi.Input<string>;
  /** Replacing the instance must provision the new one from scratch. */
  instanceId: pulumi.Input<string>;
  /**
   * The data volume's stable device path (plan/data-volume.ts): known once the volume exists, so the bundle is
   * rendered from it then. A new volume (a restore) provisions the host again, like a new instance.
   */
  dataDevice: pulumi.Input<string>;
  /** Renders the host bundle for a data device path (a pure renderer: same structure for every path). */
  bundle: (dataDevice: string) => HostBundle;
  /** The gateway's env file (secrets): stdin of one command, nowhere else. */
  gatewayEnv: pulumi.Output<string>;
  /** The edge's token key (render/edge-identity-key.ts, from the env file): stdin of one command, nowhere else. */
  edgeIdentityKey: pulumi.Output<string>;
  /** Present when the image is built on the host. */
  buildContext: StagedContext | undefined;
  /** What must exist before the host is reached (the DNS record the certificate step needs). */
  dependsOn: pulumi.Resource[];
}

export const SSH_WAIT = "20m";
export const STEP_TIMEOUT = "30m";
/** Renders the bundle's structure (its files and steps) before the data volume's id is known. */
const STAND_IN_DEVICE = ebsDataDevicePath("vol-00000000000000000");

/**
 * The Pulumi executor of the remote sequence (plan/provision.ts): one resource per action, its `after` as
 * dependencies, its triggers prefixed by the instance id and the data device (a new VM or data volume starts
 * over). Triggers hold digests only, so an unchanged second `pulumi up` runs nothing, and a changed file re-runs
 * exactly the steps that use it.
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
    const secrets: Record<SecretName, pulumi.Output<string>> = {
      gatewayEnv: pulumi.secret(args.gatewayEnv),
      edgeIdentityKey: pulumi.secret(args.edgeIdentityKey),
    };
    const digestOf = (name: SecretName) => pulumi.secret(secrets[name].apply(sha256));
    const created = new Map<string, pulumi.Resource>();
    const actionsFor = (device: string) =>
      remoteActions(planProvision(args.bundle(device)), args.user, args.buildContext);
    // The resources follow the structure (known now); their contents and triggers follow the real device path.
    const shape = actionsFor(STAND_IN_DEVICE);
    const actual = pulumi.output(args.dataDevice).apply((device) => {
      const rendered = actionsFor(device);
      const ids = (list: RemoteAction[]) => list.map((a) => `${a.kind}:${a.id}`).join(" ");
      if (ids(rendered) !== ids(shape))
        throw new Error("the host bundle's structure depends on the data device");
      return { device, byId: new Map(rendered.map((a) => [a.id, a])) };
    });

    for (const action of shape) {
      const after = action.after.map((id) => created.get(id) as pulumi.Resource);
      const options = {
        parent: this,
        dependsOn: action.after.length === 0 ? args.dependsOn : after,
      };
      const real = <T>(pick: (a: RemoteAction) => T) =>
        actual.apply(({ byId }) => pick(byId.get(action.id) as RemoteAction));
      const triggers = pulumi
        .all([args.instanceId, actual, real((a) => a.triggers)])
        .apply(([instanceId, { device }, own]) => [instanceId, device, ...own]);
      let resource: pulumi.Resource;
      switch (action.kind) {
        case "copy":
          resource = new remote.CopyToRemote(
            `${name}-${action.id}`,
            {
              connection,
              source: real((a) => new pulumi.asset.StringAsset(a.kind === "copy" ? a.content : "")),
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
              create: real((a) => (a.kind === "run" ? a.command : "")),
              addPreviousOutputInEnv: false,
              ...(action.stdin ? { stdin: secrets[action.stdin], logging: "none" as const } : {}),
              triggers: action.secretTriggers
                ? pulumi.all([triggers, digestOf(action.secretTriggers)]).apply(([t, d]) => [...t, d])
                : triggers,
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
