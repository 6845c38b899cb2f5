// The data volume as data: its tags, the device path the host mounts it by, the refusals the preview makes
// before anything is changed, and the hourly snapshot schedule. The instance is disposable; this volume is not.

/** The tag that marks a stack's data volume: Data Lifecycle Manager snapshots what carries it. */
export const DATA_VOLUME_TAG = "wagate-data";

/** The name AWS records for the attachment; the host never uses it (Nitro renames devices: see below). */
export const DATA_ATTACH_DEVICE_NAME = "/dev/sdf";

/** Smallest accepted size: the database with its WAL, the ACME account and certificates, with room to grow. */
export const MIN_DATA_VOLUME_GB = 4;
/** gp3's largest volume. */
export const MAX_DATA_VOLUME_GB = 16_384;
/** Data Lifecycle Manager keeps at most this many snapshots per schedule. */
export const MAX_SNAPSHOT_RETENTION = 1000;

const VOLUME_ID = /^vol-([0-9a-f]{8}|[0-9a-f]{17})$/;

/**
 * The stable path of an EBS volume on a Nitro instance. The NVMe controller's serial number is the volume id
 * without its hyphen and the model is "Amazon Elastic Block Store", from which udev makes
 * `/dev/disk/by-id/nvme-<model>_<serial>`: the same path on every instance the volume is attached to, whatever
 * order the NVMe devices were enumerated in (`/dev/nvme1n1` is not stable, `/dev/sdf` is not created on Debian).
 */
export function ebsDataDevicePath(volumeId: string): string {
  if (!VOLUME_ID.test(volumeId)) throw new Error(`${JSON.stringify(volumeId)} is not an EBS volume id`);
  return `/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_${volumeId.replace("-", "")}`;
}

/** The tags that make a volume this stack's data volume (and the target of its snapshot schedule). */
export const dataVolumeTargetTags = (stack: string): Record<string, string> => ({ [DATA_VOLUME_TAG]: stack });

/** What is known of the stack's data volume before the update (looked up by its tag), if it exists. */
export interface CurrentDataVolume {
  volumeId: string;
  sizeGb: number;
  /** The snapshot it was created from ("" when created empty). */
  snapshotId: string;
}

export interface DataVolumeRequest {
  sizeGb: number;
  /** `wagate:dataSnapshotId`: create (or re-create) the volume from this snapshot. */
  snapshotId: string | undefined;
  /** Size of the volume the snapshot was taken of, when a snapshot is asked for. */
  snapshotSizeGb: number | undefined;
}

/**
 * Why the request cannot be applied, one line per problem naming the key. EBS volumes grow and never shrink, and a
 * volume made from a snapshot is at least as large as the snapshot's volume. Removing (or changing)
 * `wagate:dataSnapshotId` replaces the volume: refused when it would replace a restored volume by an empty one.
 */
export function dataVolumeProblems(
  request: DataVolumeRequest,
  current: CurrentDataVolume | undefined,
): string[] {
  const problems: string[] = [];
  const restoring = request.snapshotId !== undefined && request.snapshotId !== current?.snapshotId;
  if (current && !restoring && request.sizeGb < current.sizeGb) {
    problems.push(
      `wagate:dataVolumeSizeGb: ${request.sizeGb} is below the current data volume ${current.volumeId} ` +
        `(${current.sizeGb} GB); an EBS volume cannot shrink — set at least ${current.sizeGb}`,
    );
  }
  if (request.snapshotSizeGb !== undefined && request.sizeGb < request.snapshotSizeGb) {
    problems.push(
      `wagate:dataVolumeSizeGb: ${request.sizeGb} is below the size of snapshot ${request.snapshotId} ` +
        `(${request.snapshotSizeGb} GB); set at least ${request.snapshotSizeGb}`,
    );
  }
  if (current && current.snapshotId !== "" && request.snapshotId === undefined) {
    problems.push(
      `wagate:dataSnapshotId: the data volume ${current.volumeId} was restored from ${current.snapshotId}; ` +
        "keep that setting (removing it would replace the volume with an empty one)",
    );
  }
  return problems;
}

/**
 * The snapshot schedule: every hour, the newest `retention` snapshots kept, tagged like the volume. With
 * `copyRegion`, each snapshot is also copied to that region (encrypted with its default EBS key) and kept there for
 * as many days as `retention` hours span, at least one: the off-region copy a lost region leaves.
 */
export function snapshotPolicyDetails(stack: string, retention: number, copyRegion?: string) {
  if (!Number.isInteger(retention) || retention < 1 || retention > MAX_SNAPSHOT_RETENTION) {
    throw new Error(`snapshot retention ${retention} is not between 1 and ${MAX_SNAPSHOT_RETENTION}`);
  }
  const copies =
    copyRegion === undefined
      ? {}
      : {
          crossRegionCopyRules: [
            {
              target: copyRegion,
              encrypted: true,
              copyTags: true,
              retainRule: { interval: Math.ceil(retention / 24), intervalUnit: "DAYS" },
            },
          ],
        };
  return {
    resourceTypes: ["VOLUME"],
    targetTags: dataVolumeTargetTags(stack),
    schedules: [
      {
        name: "hourly",
        // DLM's shortest interval: the recovery point of a lost volume is at most an hour old.
        createRule: { interval: 1, intervalUnit: "HOURS" },
        retainRule: { count: retention },
        // The volume's tags (stack, wagate-data) travel with each snapshot, so a restore finds them by tag.
        copyTags: true,
        tagsToAdd: { "wagate-snapshot": "hourly" },
        ...copies,
      },
    ],
  };
}

/** Data Lifecycle Manager, and only it, acting for this account. */
export function dlmAssumeRolePolicy(accountId: string) {
  return {
    Version: "2012-10-17",
    Statement: [
      {
        Effect: "Allow",
        Principal: { Service: "dlm.amazonaws.com" },
        Action: "sts:AssumeRole",
        Condition: { StringEquals: { "aws:SourceAccount": accountId } },
      },
    ],
  };
}

/** AWS's managed policy for DLM's default role: snapshot create/tag/delete and describe, nothing else. */
export const DLM_SERVICE_POLICY_ARN =
  "arn:aws:iam::aws:policy/service-role/AWSDataLifecycleManagerServiceRole";
