import { describe, expect, it } from "vitest";
import { snapshotPolicyDetails } from "../plan/data-volume.js";
import {
  bucketsBlockPublicAccess,
  dataVolumeGuarded,
  dataVolumeSnapshotted,
  imdsv2Required,
  noIamStarOnStar,
  noInternetIngressExceptWeb,
  noPublicBucket,
  noSecretsInUserData,
  noSshFromInternet,
  volumesEncrypted,
} from "../policy/rules.js";
import { policyResource, stackViolations, violations } from "./support/policy.js";

const INSTANCE = "aws:ec2/instance:Instance";
const SG = "aws:ec2/securityGroup:SecurityGroup";
const goodInstance = {
  metadataOptions: { httpEndpoint: "enabled", httpTokens: "required", httpPutResponseHopLimit: 1 },
  rootBlockDevice: { encrypted: true, volumeType: "gp3" },
};

describe("imdsv2-required", () => {
  it.each([
    ["IMDSv1 allowed", { ...goodInstance, metadataOptions: { httpTokens: "optional" } }, 1],
    ["no metadata options at all", { rootBlockDevice: { encrypted: true } }, 1],
    [
      "hop limit 2 lets containers reach credentials",
      { metadataOptions: { httpTokens: "required", httpPutResponseHopLimit: 2 } },
      1,
    ],
    ["tokens required, hop limit 1", goodInstance, 0],
    ["metadata service disabled", { metadataOptions: { httpEndpoint: "disabled" } }, 0],
  ])("%s", async (_, props, count) => {
    expect(await violations(imdsv2Required, INSTANCE, props)).toHaveLength(count);
  });

  it("covers launch templates", async () => {
    expect(await violations(imdsv2Required, "aws:ec2/launchTemplate:LaunchTemplate", {})).toHaveLength(1);
  });
});

describe("volumes-encrypted", () => {
  it.each([
    ["unencrypted root", INSTANCE, { rootBlockDevice: { encrypted: false } }, 1],
    ["root without settings", INSTANCE, {}, 1],
    [
      "encrypted root, one plain extra volume",
      INSTANCE,
      { rootBlockDevice: { encrypted: true }, ebsBlockDevices: [{ deviceName: "/dev/sdf" }] },
      1,
    ],
    [
      "encrypted root and extra volume",
      INSTANCE,
      { rootBlockDevice: { encrypted: true }, ebsBlockDevices: [{ encrypted: true }] },
      0,
    ],
    ["plain EBS volume", "aws:ebs/volume:Volume", { size: 10 }, 1],
    ["encrypted EBS volume", "aws:ebs/volume:Volume", { size: 10, encrypted: true }, 0],
  ])("%s", async (_, type, props, count) => {
    expect(await violations(volumesEncrypted, type, props)).toHaveLength(count);
  });
});

const rule = (fromPort: number, toPort: number, cidrBlocks: string[], protocol = "tcp") => ({
  protocol,
  fromPort,
  toPort,
  cidrBlocks,
});

const VOLUME = "aws:ebs/volume:Volume";
const dataVolume = (stack: string, extra: Record<string, unknown> = {}) => ({
  size: 10,
  type: "gp3",
  encrypted: true,
  tags: { stack, "wagate-data": stack },
  ...extra,
});

describe("data-volume-guarded", () => {
  it.each([
    ["prod data volume, protected", dataVolume("prod"), true, []],
    ["prod data volume, unprotected", dataVolume("prod"), false, [/must be protected/]],
    ["a new stack's data volume, unprotected", dataVolume("prod-eu"), false, [/must be protected/]],
    ["dev data volume, unprotected", dataVolume("dev"), false, []],
    ["pr stack data volume, unprotected", dataVolume("pr-7"), false, []],
    ["unencrypted data volume", dataVolume("dev", { encrypted: false }), false, [/encrypted/]],
    ["gp2 data volume", dataVolume("dev", { type: "gp2" }), false, [/gp3/]],
    ["a volume without the data tag", { size: 10, tags: { stack: "prod" } }, false, []],
  ])("%s", async (_, props, protect, expected) => {
    const found = await violations(dataVolumeGuarded, VOLUME, props, { protect });
    expect(found).toHaveLength(expected.length);
    expected.forEach((pattern, i) => {
      expect(found[i]).toMatch(pattern);
    });
  });
});

describe("data-volume-snapshotted-hourly", () => {
  const volume = policyResource(VOLUME, "data", dataVolume("prod"));
  const dlm = (props: Record<string, unknown>) =>
    policyResource("aws:dlm/lifecyclePolicy:LifecyclePolicy", "snapshots", props);
  const hourly = { state: "ENABLED", policyDetails: snapshotPolicyDetails("prod", 24) };
  const schedule = hourly.policyDetails.schedules[0];

  it.each([
    ["an hourly policy targeting the volume's tag", [dlm(hourly)], 0],
    ["no lifecycle policy", [], 1],
    ["a disabled policy", [dlm({ ...hourly, state: "DISABLED" })], 1],
    [
      "a policy for another stack's tag",
      [dlm({ ...hourly, policyDetails: snapshotPolicyDetails("staging", 24) })],
      1,
    ],
    [
      "every 12 hours",
      [
        dlm({
          ...hourly,
          policyDetails: {
            ...hourly.policyDetails,
            schedules: [{ ...schedule, createRule: { interval: 12, intervalUnit: "HOURS" } }],
          },
        }),
      ],
      1,
    ],
    [
      "keeping no snapshot",
      [
        dlm({
          ...hourly,
          policyDetails: { ...hourly.policyDetails, schedules: [{ ...schedule, retainRule: { count: 0 } }] },
        }),
      ],
      1,
    ],
  ])("%s", async (_, policies, count) => {
    expect(await stackViolations(dataVolumeSnapshotted, [volume, ...policies])).toHaveLength(count);
  });

  it("ignores volumes that are not data volumes", async () => {
    const scratch = policyResource(VOLUME, "scratch", { size: 10, encrypted: true, tags: {} });
    expect(await stackViolations(dataVolumeSnapshotted, [scratch])).toEqual([]);
  });
});

describe("no-internet-ingress-except-web", () => {
  it.each([
    ["80 and 443 open", { ingress: [rule(80, 80, ["0.0.0.0/0"]), rule(443, 443, ["0.0.0.0/0"])] }, 0],
    ["8080 open to the internet", { ingress: [rule(8080, 8080, ["0.0.0.0/0"])] }, 1],
    ["a range that includes 443", { ingress: [rule(0, 1024, ["0.0.0.0/0"])] }, 1],
    ["everything, any protocol", { ingress: [rule(0, 0, ["0.0.0.0/0"], "-1")] }, 1],
    [
      "IPv6 whole internet on 3000",
      { ingress: [{ protocol: "tcp", fromPort: 3000, toPort: 3000, ipv6CidrBlocks: ["::/0"] }] },
      1,
    ],
    ["3000 from an admin range", { ingress: [rule(3000, 3000, ["203.0.113.0/24"])] }, 0],
  ])("%s", async (_, props, count) => {
    expect(await violations(noInternetIngressExceptWeb, SG, props)).toHaveLength(count);
  });

  it("covers separate ingress rule resources", async () => {
    const open = { ipProtocol: "tcp", fromPort: 5432, toPort: 5432, cidrIpv4: "0.0.0.0/0" };
    const type = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule";
    expect(await violations(noInternetIngressExceptWeb, type, open)).toHaveLength(1);
    expect(
      await violations(noInternetIngressExceptWeb, type, { ...open, fromPort: 443, toPort: 443 }),
    ).toEqual([]);
  });
});

describe("no-ssh-from-internet", () => {
  it.each([
    ["inline 22 from 0.0.0.0/0", SG, { ingress: [rule(22, 22, ["0.0.0.0/0"])] }, 1],
    [
      "inline 22 from ::/0",
      SG,
      { ingress: [{ protocol: "tcp", fromPort: 22, toPort: 22, ipv6CidrBlocks: ["::/0"] }] },
      1,
    ],
    ["inline all traffic from the internet", SG, { ingress: [rule(0, 0, ["0.0.0.0/0"], "-1")] }, 1],
    ["inline range 20-25 from the internet", SG, { ingress: [rule(20, 25, ["0.0.0.0/0"])] }, 1],
    ["inline 22 from an admin range", SG, { ingress: [rule(22, 22, ["203.0.113.0/24"])] }, 0],
    [
      "separate SecurityGroupRule",
      "aws:ec2/securityGroupRule:SecurityGroupRule",
      { type: "ingress", ...rule(22, 22, ["0.0.0.0/0"]) },
      1,
    ],
    [
      "separate egress rule is not ingress",
      "aws:ec2/securityGroupRule:SecurityGroupRule",
      { type: "egress", ...rule(22, 22, ["0.0.0.0/0"]) },
      0,
    ],
    [
      "vpc ingress rule from ::/0",
      "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
      { ipProtocol: "tcp", fromPort: 22, toPort: 22, cidrIpv6: "::/0" },
      1,
    ],
    [
      "vpc ingress rule from an admin range",
      "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
      { ipProtocol: "tcp", fromPort: 22, toPort: 22, cidrIpv4: "198.51.100.7/32" },
      0,
    ],
  ])("%s", async (_, type, props, count) => {
    expect(await violations(noSshFromInternet, type, props)).toHaveLength(count);
  });
});

describe("no-public-bucket", () => {
  const PAB = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock";
  const allBlocked = {
    blockPublicAcls: true,
    blockPublicPolicy: true,
    ignorePublicAcls: true,
    restrictPublicBuckets: true,
  };
  it.each([
    ["public-read bucket ACL", "aws:s3/bucketAcl:BucketAcl", { acl: "public-read" }, 1],
    ["private bucket ACL", "aws:s3/bucketAcl:BucketAcl", { acl: "private" }, 0],
    ["public access block with a gap", PAB, { ...allBlocked, restrictPublicBuckets: false }, 1],
    ["public access block fully on", PAB, allBlocked, 0],
    [
      "policy allowing everyone",
      "aws:s3/bucketPolicy:BucketPolicy",
      {
        policy: JSON.stringify({
          Statement: [
            { Effect: "Allow", Principal: "*", Action: "s3:GetObject", Resource: "arn:aws:s3:::b/*" },
          ],
        }),
      },
      1,
    ],
    [
      "policy denying insecure transport",
      "aws:s3/bucketPolicy:BucketPolicy",
      {
        policy: JSON.stringify({
          Statement: [
            {
              Effect: "Deny",
              Principal: "*",
              Action: "s3:*",
              Resource: "arn:aws:s3:::b",
              Condition: { Bool: { "aws:SecureTransport": "false" } },
            },
          ],
        }),
      },
      0,
    ],
  ])("%s", async (_, type, props, count) => {
    expect(await violations(noPublicBucket, type, props)).toHaveLength(count);
  });

  it("every bucket has a full public access block (stack rule)", async () => {
    const bucket = policyResource("aws:s3/bucket:Bucket", "backups", {
      bucket: "backups-123",
      id: "backups-123",
    });
    const other = policyResource("aws:s3/bucket:Bucket", "other", { bucket: "other-9", id: "other-9" });
    const block = policyResource(PAB, "backups", { bucket: "backups-123", ...allBlocked });
    expect(await stackViolations(bucketsBlockPublicAccess, [bucket, block])).toEqual([]);
    expect(await stackViolations(bucketsBlockPublicAccess, [bucket, other, block])).toEqual([
      "bucket other has no public access block",
    ]);
    const leaky = policyResource(
      PAB,
      "leaky",
      { bucket: "x", ...allBlocked, blockPublicPolicy: false },
      { bucket: [bucket] },
    );
    expect(await stackViolations(bucketsBlockPublicAccess, [bucket, leaky])).toHaveLength(1);
  });
});

describe("no-iam-star-action-on-star-resource", () => {
  const doc = (statement: Record<string, unknown>) =>
    JSON.stringify({ Version: "2012-10-17", Statement: [statement] });
  it.each([
    [
      "* on *",
      "aws:iam/rolePolicy:RolePolicy",
      { policy: doc({ Effect: "Allow", Action: "*", Resource: "*" }) },
      1,
    ],
    [
      "* on * as lists",
      "aws:iam/policy:Policy",
      { policy: doc({ Effect: "Allow", Action: ["s3:GetObject", "*"], Resource: ["*"] }) },
      1,
    ],
    [
      "NotAction on *",
      "aws:iam/rolePolicy:RolePolicy",
      { policy: doc({ Effect: "Allow", NotAction: "iam:*", Resource: "*" }) },
      1,
    ],
    [
      "inline policy of a role",
      "aws:iam/role:Role",
      { inlinePolicies: [{ name: "x", policy: doc({ Effect: "Allow", Action: "*", Resource: "*" }) }] },
      1,
    ],
    [
      "AdministratorAccess attached",
      "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
      { policyArn: "arn:aws:iam::aws:policy/AdministratorAccess" },
      1,
    ],
    [
      "scoped statement",
      "aws:iam/rolePolicy:RolePolicy",
      { policy: doc({ Effect: "Allow", Action: "s3:PutObject", Resource: "arn:aws:s3:::b/k" }) },
      0,
    ],
    [
      "deny * on *",
      "aws:iam/rolePolicy:RolePolicy",
      { policy: doc({ Effect: "Deny", Action: "*", Resource: "*" }) },
      0,
    ],
  ])("%s", async (_, type, props, count) => {
    expect(await violations(noIamStarOnStar, type, props)).toHaveLength(count);
  });
});

describe("no-secrets-in-user-data", () => {
  const b64 = (s: string) => Buffer.from(s).toString("base64");
  it.each([
    [
      "API secret assignment",
      { userData: "#!/bin/sh\necho API_SECRET=supersecretvalue123 >> /etc/env\n" },
      1,
    ],
    ["hex key", { userData: `#!/bin/sh\nexport X=${"ab".repeat(32)}\n` }, 1],
    ["private key", { userData: "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n" }, 1],
    ["AWS key id, base64", { userDataBase64: b64("aws_access_key_id AKIAABCDEFGHIJKLMNOP") }, 1],
    [
      "Meta token",
      { userData: "curl -H 'Authorization: Bearer EAAGm0PX4ZCpsBAKZAZBZCXXXXXXXXXXXXXXXXXXXXXXXX'" },
      1,
    ],
    ["plain cloud-config", { userData: "#cloud-config\npackage_update: false\ntimezone: UTC\n" }, 0],
    ["no user data", {}, 0],
  ])("%s", async (_, props, count) => {
    expect(await violations(noSecretsInUserData, INSTANCE, props)).toHaveLength(count);
  });
});
