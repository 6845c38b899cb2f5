import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";
import { amiProblem, DEBIAN_AMI_OWNER, DEBIAN_SSH_USER } from "../plan/ami.js";
import { EC2_ASSUME_ROLE_POLICY, instancePolicy } from "../plan/iam.js";
import type { Protection } from "../plan/protection.js";
import { renderCloudConfig } from "../render/cloud-init.js";

export interface HostArgs {
  stack: string;
  /** Checked with `verifyDebianAmi` before any resource is made. */
  amiId: string;
  instanceType: string;
  detailedMonitoring: boolean;
  subnetId: pulumi.Input<string>;
  securityGroupId: pulumi.Input<string>;
  backupBucketArn: pulumi.Input<string>;
  backupPrefix: string;
  /** For the Elastic IP and the SSH key. */
  identityProtection: Protection;
  tags: Record<string, string>;
}

export const ROOT_VOLUME_GB = 20;

/**
 * Looks the pinned id up in Debian's account only, before any resource exists: another publisher's image, another
 * distribution or the wrong architecture for the instance type stops the program with the config key named.
 */
export async function verifyDebianAmi(amiId: string, instanceType: string): Promise<string> {
  const image = await aws.ec2
    .getAmi({
      owners: [DEBIAN_AMI_OWNER],
      filters: [{ name: "image-id", values: [amiId] }],
      includeDeprecated: true,
    })
    .catch((error: unknown) => {
      const reason = error instanceof Error ? error.message.split("\n")[0] : String(error);
      throw new pulumi.RunError(
        `wagate:amiId: ${amiId} is not one of Debian's images (owner ${DEBIAN_AMI_OWNER}) in this region: ${reason}`,
      );
    });
  const problem = amiProblem(
    { imageId: image.id, name: image.name, ownerId: image.ownerId, architecture: image.architecture },
    instanceType,
  );
  if (problem) throw new pulumi.RunError(`wagate:amiId: ${problem}`);
  return image.id;
}
/**
 * The Debian 13 VM: pinned AMI, IMDSv2 only, encrypted gp3 root, its own role, key pair and Elastic IP. The VM holds
 * no data (that is the data volume's job, components/data-volume.ts): it is never protected, its root volume goes
 * with it, and a new AMI or instance type replaces it. The Elastic IP and the key stay.
 */
export class Host extends pulumi.ComponentResource {
  readonly instanceId: pulumi.Output<string>;
  readonly publicIp: pulumi.Output<string>;
  /** The Elastic IP itself, independent of the instance it is attached to (for DNS: a new VM leaves it alone). */
  readonly elasticIp: pulumi.Output<string>;
  readonly sshUser: string;
  readonly privateKey: pulumi.Output<string>;

  constructor(name: string, args: HostArgs, opts?: pulumi.ComponentResourceOptions) {
    super("wagate:host:Host", name, {}, opts);
    const parent = { parent: this };
    const tags = (role: string) => ({ ...args.tags, Name: `${name}-${role}` });
    const identity = {
      parent: this,
      protect: args.identityProtection.protect,
      retainOnDelete: args.identityProtection.retainOnDelete,
    };

    const key = new tls.PrivateKey(`${name}-ssh`, { algorithm: "ED25519" }, identity);
    const keyPair = new aws.ec2.KeyPair(
      `${name}-ssh`,
      { publicKey: key.publicKeyOpenssh, tags: tags("ssh") },
      identity,
    );

    // No CloudWatch log group: no forwarder for it is packaged for Debian 13 (AWS's agents are not in Debian;
    // neither fluent-bit nor vector is), and a group nothing writes to is a resource that does nothing. Logs
    // stay in the VM's journal and /var/log/nginx (README: "Reading the logs").
    const role = new aws.iam.Role(
      `${name}-role`,
      {
        description: "wagate host: its own backups, nothing else",
        assumeRolePolicy: JSON.stringify(EC2_ASSUME_ROLE_POLICY),
        tags: tags("role"),
      },
      parent,
    );
    new aws.iam.RolePolicy(
      `${name}-backups`,
      {
        role: role.id,
        policy: pulumi
          .output(args.backupBucketArn)
          .apply((bucketArn) =>
            JSON.stringify(instancePolicy({ bucketArn, backupPrefix: args.backupPrefix })),
          ),
      },
      // Once named for backups and logs: the same policy, updated in place.
      { parent: this, aliases: [{ name: `${name}-backups-and-logs` }] },
    );
    const profile = new aws.iam.InstanceProfile(
      `${name}-profile`,
      { role: role.name, tags: tags("profile") },
      parent,
    );

    const instance = new aws.ec2.Instance(
      `${name}-vm`,
      {
        ami: args.amiId,
        instanceType: args.instanceType,
        subnetId: args.subnetId,
        vpcSecurityGroupIds: [args.securityGroupId],
        associatePublicIpAddress: false,
        keyName: keyPair.keyName,
        iamInstanceProfile: profile.name,
        monitoring: args.detailedMonitoring,
        // Burstable types otherwise default to "unlimited" credits: a busy month bills extra, silently.
        creditSpecification: args.instanceType.startsWith("t") ? { cpuCredits: "standard" } : undefined,
        metadataOptions: {
          httpEndpoint: "enabled",
          httpTokens: "required",
          httpPutResponseHopLimit: 1,
          instanceMetadataTags: "disabled",
        },
        rootBlockDevice: {
          volumeType: "gp3",
          volumeSize: ROOT_VOLUME_GB,
          encrypted: true,
          deleteOnTermination: true,
          tags: tags("root"),
        },
        disableApiTermination: false,
        // Only how the SSH host key is made (no secret): the key's public half is read back from the console.
        userData: renderCloudConfig(),
        tags: tags("vm"),
      },
      // A changed AMI replaces the instance by itself; a changed type would stop and modify it in place. Both go the
      // one tested way instead: a fresh instance, provisioned from scratch against the kept data volume.
      { parent: this, replaceOnChanges: ["instanceType"] },
    );

    const address = new aws.ec2.Eip(`${name}-ip`, { domain: "vpc", tags: tags("ip") }, identity);
    // A VPC address is associated with one instance at a time: the old association goes before the new one comes.
    const association = new aws.ec2.EipAssociation(
      `${name}-ip`,
      { allocationId: address.allocationId, instanceId: instance.id },
      { parent: this, deleteBeforeReplace: true },
    );

    this.instanceId = instance.id;
    // Known only once the address is attached, so SSH waits for the association rather than racing it.
    this.publicIp = pulumi.all([address.publicIp, association.id]).apply(([ip]) => ip);
    this.elasticIp = address.publicIp;
    this.sshUser = DEBIAN_SSH_USER;
    this.privateKey = pulumi.secret(key.privateKeyOpenssh);
    this.registerOutputs({
      instanceId: this.instanceId,
      publicIp: this.publicIp,
      privateKey: this.privateKey,
    });
  }
}
