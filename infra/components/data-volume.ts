import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import {
  type CurrentDataVolume,
  DATA_ATTACH_DEVICE_NAME,
  DATA_VOLUME_TAG,
  DLM_SERVICE_POLICY_ARN,
  dataVolumeProblems,
  dataVolumeTargetTags,
  dlmAssumeRolePolicy,
  ebsDataDevicePath,
  snapshotPolicyDetails,
} from "../plan/data-volume.js";
import type { Protection } from "../plan/protection.js";

export interface DataVolumeArgs {
  stack: string;
  accountId: string;
  /** The zone of the instance's subnet (never read from the instance: the volume must not depend on it). */
  availabilityZone: pulumi.Input<string>;
  sizeGb: number;
  snapshotId: string | undefined;
  snapshotRetention: number;
  /** Another region the snapshots are copied to, if any. */
  snapshotCopyRegion: string | undefined;
  /** The instance the volume is attached to (a new one gets a new attachment, the volume stays). */
  instanceId: pulumi.Input<string>;
  protection: Protection;
  tags: Record<string, string>;
}

const NO_RESULTS = /no results|no matching|not found/i;

/**
 * Looks up the stack's current data volume (the newest carrying its tag) and the snapshot to restore from, and
 * refuses, before any resource is touched, what EBS cannot do or what would lose data (plan/data-volume.ts).
 */
export async function verifyDataVolume(
  stack: string,
  request: { sizeGb: number; snapshotId: string | undefined },
): Promise<void> {
  const lookupFailed = (what: string) => (error: unknown) => {
    const message = error instanceof Error ? error.message : String(error);
    // "no results" is an answer (no such volume yet), anything else a failure to report in one line.
    if (NO_RESULTS.test(message)) return undefined;
    const reason = message.split("\n").find((line) => line.trim() !== "") ?? "";
    throw new pulumi.RunError(`${what}: ${reason.trim()}`);
  };
  const found = await aws.ebs
    .getVolume({
      mostRecent: true,
      filters: [{ name: `tag:${DATA_VOLUME_TAG}`, values: [stack] }],
    })
    .catch(lookupFailed("wagate:dataVolumeSizeGb: cannot look up the current data volume"));
  const current: CurrentDataVolume | undefined = found
    ? { volumeId: found.volumeId, sizeGb: found.size, snapshotId: found.snapshotId ?? "" }
    : undefined;
  let snapshotSizeGb: number | undefined;
  if (request.snapshotId !== undefined) {
    const snapshot = await aws.ebs
      .getSnapshot({ snapshotIds: [request.snapshotId] })
      .catch(lookupFailed(`wagate:dataSnapshotId: cannot look up ${request.snapshotId}`));
    if (!snapshot) {
      throw new pulumi.RunError(`wagate:dataSnapshotId: ${request.snapshotId} does not exist in this region`);
    }
    snapshotSizeGb = snapshot.volumeSize;
  }
  const problems = dataVolumeProblems({ ...request, snapshotSizeGb }, current);
  if (problems.length > 0) throw new pulumi.RunError(problems.join("\n"));
}

/**
 * The gateway's data on a volume of its own: an encrypted gp3 EBS volume in the instance's zone, attached to the
 * current instance, snapshotted every hour by Data Lifecycle Manager. It outlives the instance: a new AMI or
 * instance type replaces only the attachment.
 */
export class DataVolume extends pulumi.ComponentResource {
  readonly volumeId: pulumi.Output<string>;
  /** Where the host finds the volume once attached (`/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol…`). */
  readonly devicePath: pulumi.Output<string>;
  readonly attachment: aws.ec2.VolumeAttachment;

  constructor(name: string, args: DataVolumeArgs, opts?: pulumi.ComponentResourceOptions) {
    super("wagate:data:DataVolume", name, {}, opts);
    const parent = { parent: this };
    const tags = (role: string) => ({ ...args.tags, Name: `${name}-${role}` });

    const volume = new aws.ebs.Volume(
      `${name}-volume`,
      {
        availabilityZone: args.availabilityZone,
        size: args.sizeGb,
        type: "gp3",
        encrypted: true,
        // Changing it replaces the volume: the restore path (README, Operating). Absent: an empty volume.
        snapshotId: args.snapshotId,
        // Where the volume is guarded, deleting it anyway (unprotected by hand) still leaves one last snapshot.
        finalSnapshot: args.protection.protect,
        tags: { ...tags("data"), ...dataVolumeTargetTags(args.stack) },
      },
      { parent: this, protect: args.protection.protect, retainOnDelete: args.protection.retainOnDelete },
    );

    // A volume is attached to one instance at a time: when the instance is replaced, the old attachment goes first
    // (stopping the old instance, so the gateway shuts down and the file system is clean), then the new one comes.
    this.attachment = new aws.ec2.VolumeAttachment(
      `${name}-attachment`,
      {
        volumeId: volume.id,
        instanceId: args.instanceId,
        deviceName: DATA_ATTACH_DEVICE_NAME,
        stopInstanceBeforeDetaching: true,
      },
      { parent: this, deleteBeforeReplace: true },
    );

    const role = new aws.iam.Role(
      `${name}-snapshots`,
      {
        description: "wagate data volume: Data Lifecycle Manager's hourly snapshots",
        assumeRolePolicy: JSON.stringify(dlmAssumeRolePolicy(args.accountId)),
        tags: tags("snapshots"),
      },
      parent,
    );
    const permissions = new aws.iam.RolePolicyAttachment(
      `${name}-snapshots`,
      { role: role.name, policyArn: DLM_SERVICE_POLICY_ARN },
      parent,
    );
    new aws.dlm.LifecyclePolicy(
      `${name}-snapshots`,
      {
        description: `wagate ${args.stack}: hourly snapshots of the data volume`,
        executionRoleArn: role.arn,
        state: "ENABLED",
        policyDetails: snapshotPolicyDetails(args.stack, args.snapshotRetention, args.snapshotCopyRegion),
        tags: tags("snapshots"),
      },
      { parent: this, dependsOn: [permissions] },
    );

    this.volumeId = volume.id;
    // From the volume, not the attachment: known in a preview that replaces the attachment, so the provisioning's
    // triggers stay known too. (The provisioning waits for the attachment through its dependencies.)
    this.devicePath = volume.id.apply(ebsDataDevicePath);
    this.registerOutputs({ volumeId: this.volumeId, devicePath: this.devicePath });
  }
}
