import { local } from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { consoleHostKeyCommand, HOST_KEY_WAIT_SECONDS, hostKeyFromConsole } from "../plan/host-key.js";

export interface HostKeyArgs {
  instanceId: pulumi.Input<string>;
  region: string;
}

/**
 * The VM's SSH host key as its first boot printed it on the serial console, read through EC2's API on the
 * deploying machine (plan/host-key.ts). Runs once per instance: the command line holds the instance id, so a
 * replaced VM is read again and an unchanged one never.
 */
export class HostKey extends pulumi.ComponentResource {
  /** `ssh-ed25519 <base64>`: what every remote command pins (`connection.hostKey`). */
  readonly publicKey: pulumi.Output<string>;

  constructor(name: string, args: HostKeyArgs, opts?: pulumi.ComponentResourceOptions) {
    super("wagate:hostKey:HostKey", name, {}, opts);
    const lookup = new local.Command(
      `${name}-host-key`,
      {
        create: pulumi
          .output(args.instanceId)
          .apply((instanceId) => consoleHostKeyCommand({ instanceId, region: args.region })),
        addPreviousOutputInEnv: false,
      },
      {
        parent: this,
        customTimeouts: {
          create: `${HOST_KEY_WAIT_SECONDS + 300}s`,
          update: `${HOST_KEY_WAIT_SECONDS + 300}s`,
        },
      },
    );
    this.publicKey = lookup.stdout.apply(hostKeyFromConsole);
    this.registerOutputs({ publicKey: this.publicKey });
  }
}
