import { describe, expect, it } from "vitest";
import {
  type CurrentDataVolume,
  DATA_VOLUME_TAG,
  dataVolumeProblems,
  dlmAssumeRolePolicy,
  ebsDataDevicePath,
  snapshotPolicyDetails,
} from "../plan/data-volume.js";

// The data volume's pure decisions: the device path the host mounts, what the preview refuses, the schedule.

describe("ebsDataDevicePath", () => {
  it.each([
    ["vol-0a1b2c3d4e5f60718", "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0a1b2c3d4e5f60718"],
    ["vol-12345678", "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol12345678"],
  ])("%s → %s (the NVMe serial is the id without its hyphen)", (id, path) => {
    expect(ebsDataDevicePath(id)).toBe(path);
  });

  it.each([["vol-XYZ"], ["snap-0a1b2c3d4e5f60718"], [""], ["vol-0a1b2c3d4e5f60718/../sda"]])(
    "refuses %j",
    (id) => {
      expect(() => ebsDataDevicePath(id)).toThrow(/not an EBS volume id/);
    },
  );
});

describe("dataVolumeProblems", () => {
  const current: CurrentDataVolume = { volumeId: "vol-0a1b2c3d4e5f60718", sizeGb: 20, snapshotId: "" };
  const restored: CurrentDataVolume = { ...current, snapshotId: "snap-0123456789abcdef0" };
  const ask = (sizeGb: number, snapshotId?: string, snapshotSizeGb?: number) => ({
    sizeGb,
    snapshotId,
    snapshotSizeGb,
  });

  it.each([
    ["a first deployment", ask(10), undefined, []],
    ["the same size", ask(20), current, []],
    ["a larger size (EBS grows in place)", ask(50), current, []],
    ["a smaller size", ask(10), current, ["wagate:dataVolumeSizeGb: 10 is below the current data volume"]],
    ["a restore from a snapshot of the same size", ask(20, "snap-0fedcba9876543210", 20), current, []],
    [
      "a restore into a volume smaller than the snapshot",
      ask(10, "snap-0fedcba9876543210", 20),
      current,
      ["wagate:dataVolumeSizeGb: 10 is below the size of snapshot snap-0fedcba9876543210"],
    ],
    ["keeping the snapshot a volume was restored from", ask(20, "snap-0123456789abcdef0", 20), restored, []],
    [
      "dropping the snapshot a volume was restored from",
      ask(20),
      restored,
      [
        "wagate:dataSnapshotId: the data volume vol-0a1b2c3d4e5f60718 was restored from snap-0123456789abcdef0",
      ],
    ],
    [
      "shrinking a restored volume",
      ask(10, "snap-0123456789abcdef0", 20),
      restored,
      [
        "wagate:dataVolumeSizeGb: 10 is below the current data volume",
        "wagate:dataVolumeSizeGb: 10 is below the size of snapshot",
      ],
    ],
  ] as const)("%s", (_, request, volume, expected) => {
    const problems = dataVolumeProblems(request, volume);
    expect(problems).toHaveLength(expected.length);
    expected.forEach((start, i) => {
      expect(problems[i]).toContain(start);
    });
  });
});

describe("snapshotPolicyDetails", () => {
  it("snapshots the stack's tagged volumes every hour and keeps the given number", () => {
    const details = snapshotPolicyDetails("prod", 72);
    expect(details.resourceTypes).toEqual(["VOLUME"]);
    expect(details.targetTags).toEqual({ [DATA_VOLUME_TAG]: "prod" });
    expect(details.schedules).toEqual([
      expect.objectContaining({
        createRule: { interval: 1, intervalUnit: "HOURS" },
        retainRule: { count: 72 },
        copyTags: true,
      }),
    ]);
  });

  it("keeps no copy elsewhere unless a region is given", () => {
    expect(snapshotPolicyDetails("prod", 72).schedules[0]).not.toHaveProperty("crossRegionCopyRules");
  });

  it.each([
    [6, 1],
    [24, 1],
    [25, 2],
    [72, 3],
  ])("copies each snapshot to another region, encrypted, %i hours kept as %i day(s) there", (hours, days) => {
    expect(snapshotPolicyDetails("prod", hours, "us-west-2").schedules[0]?.crossRegionCopyRules).toEqual([
      {
        target: "us-west-2",
        encrypted: true,
        copyTags: true,
        retainRule: { interval: days, intervalUnit: "DAYS" },
      },
    ]);
  });

  it.each([[0], [-1], [1.5], [1001]])("refuses a retention of %s", (retention) => {
    expect(() => snapshotPolicyDetails("prod", retention)).toThrow(/retention/);
  });
});

describe("dlmAssumeRolePolicy", () => {
  it("lets Data Lifecycle Manager alone assume the role, on behalf of this account only", () => {
    expect(dlmAssumeRolePolicy("123456789012").Statement).toEqual([
      {
        Effect: "Allow",
        Principal: { Service: "dlm.amazonaws.com" },
        Action: "sts:AssumeRole",
        Condition: { StringEquals: { "aws:SourceAccount": "123456789012" } },
      },
    ]);
  });
});
