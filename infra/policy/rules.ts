import type { PolicyResource, ResourceValidationPolicy, StackValidationPolicy } from "@pulumi/policy";
import { DATA_VOLUME_TAG } from "../plan/data-volume.js";
import { isDisposableStack } from "../plan/protection.js";

// The stack's policies as plain objects, apart from `new PolicyPack(...)` (index.ts) so that tests call their
// `validateResource`/`validateStack` directly. They read raw resource types and properties rather than the
// typed helpers of @pulumi/policy, so a rule also covers the resource kinds this program does not use today
// (launch templates, separate security group rules, bucket ACLs): a later change cannot route around it.

type Props = Record<string, unknown>;

const WHOLE_INTERNET = new Set(["0.0.0.0/0", "::/0"]);
const OPEN_TO_INTERNET_PORTS = new Set([80, 443]);

const asArray = (v: unknown): unknown[] => (Array.isArray(v) ? v : v === undefined || v === null ? [] : [v]);
const isObject = (v: unknown): v is Props => typeof v === "object" && v !== null && !Array.isArray(v);

// ---------------------------------------------------------------------------------------------------- IMDSv2

function checkMetadataOptions(options: unknown, report: (message: string) => void): void {
  const o = isObject(options) ? options : {};
  if (o.httpEndpoint === "disabled") return;
  if (o.httpTokens !== "required") {
    report(
      'IMDSv2 must be required: set metadataOptions.httpTokens to "required" (IMDSv1 leaks credentials to SSRF)',
    );
  }
  if (o.httpPutResponseHopLimit !== undefined && o.httpPutResponseHopLimit !== 1) {
    report(
      "metadataOptions.httpPutResponseHopLimit must be 1 so that containers cannot reach the instance's credentials",
    );
  }
}

export const imdsv2Required: ResourceValidationPolicy = {
  name: "imdsv2-required",
  description: "EC2 instances and launch templates require IMDSv2 tokens with a hop limit of 1.",
  enforcementLevel: "mandatory",
  validateResource: (args, reportViolation) => {
    if (args.type === "aws:ec2/instance:Instance" || args.type === "aws:ec2/launchTemplate:LaunchTemplate") {
      checkMetadataOptions(args.props.metadataOptions, reportViolation);
    }
  },
};

// ------------------------------------------------------------------------------------------------ encryption

export const volumesEncrypted: ResourceValidationPolicy = {
  name: "volumes-encrypted",
  description: "Root and every other EBS volume are encrypted.",
  enforcementLevel: "mandatory",
  validateResource: (args, reportViolation) => {
    const p = args.props;
    switch (args.type) {
      case "aws:ec2/instance:Instance": {
        if (!isObject(p.rootBlockDevice) || p.rootBlockDevice.encrypted !== true) {
          reportViolation("the root volume must be encrypted: set rootBlockDevice.encrypted to true");
        }
        for (const device of asArray(p.ebsBlockDevices)) {
          if (!isObject(device) || device.encrypted !== true) {
            reportViolation(
              `EBS volume ${isObject(device) ? String(device.deviceName) : "?"} must be encrypted`,
            );
          }
        }
        break;
      }
      case "aws:ebs/volume:Volume":
        if (p.encrypted !== true) reportViolation("the EBS volume must be encrypted");
        break;
      case "aws:ec2/launchTemplate:LaunchTemplate":
        for (const mapping of asArray(p.blockDeviceMappings)) {
          const ebs = isObject(mapping) ? mapping.ebs : undefined;
          if (isObject(ebs) && ebs.encrypted !== true && ebs.encrypted !== "true") {
            reportViolation("every EBS block device of the launch template must be encrypted");
          }
        }
        break;
    }
  },
};

// ----------------------------------------------------------------------------------------------- data volume

/** The stack a data volume belongs to (its `wagate-data` tag), or undefined for any other volume. */
function dataVolumeStack(type: string, p: Props): string | undefined {
  if (type !== "aws:ebs/volume:Volume" || !isObject(p.tags)) return undefined;
  const stack = p.tags[DATA_VOLUME_TAG];
  return typeof stack === "string" ? stack : undefined;
}

export const dataVolumeGuarded: ResourceValidationPolicy = {
  name: "data-volume-guarded",
  description:
    "A data volume is encrypted gp3; outside disposable stacks it is protected and retained when it leaves the stack.",
  enforcementLevel: "mandatory",
  validateResource: (args, reportViolation) => {
    const stack = dataVolumeStack(args.type, args.props);
    if (stack === undefined) return;
    if (args.props.encrypted !== true) reportViolation("the data volume must be encrypted");
    if (args.props.type !== "gp3")
      reportViolation(`the data volume must be gp3, not ${String(args.props.type)}`);
    if (!isDisposableStack(stack) && args.opts.protect !== true) {
      reportViolation(`the data volume of stack ${stack} must be protected (protectionFor(stack, "data"))`);
    }
  },
};

const DLM_TYPE = "aws:dlm/lifecyclePolicy:LifecyclePolicy";

/** Whether a lifecycle policy snapshots volumes tagged `key=value` at least hourly and keeps at least one. */
function snapshotsHourly(policy: PolicyResource, key: string, value: string): boolean {
  const p = policy.props;
  const details = isObject(p.policyDetails) ? p.policyDetails : {};
  const targets = isObject(details.targetTags) ? details.targetTags : {};
  if (p.state === "DISABLED" || targets[key] !== value) return false;
  if (!asArray(details.resourceTypes).includes("VOLUME")) return false;
  return asArray(details.schedules)
    .filter(isObject)
    .some((schedule) => {
      const create = isObject(schedule.createRule) ? schedule.createRule : {};
      const retain = isObject(schedule.retainRule) ? schedule.retainRule : {};
      const hourly = create.intervalUnit === "HOURS" && Number(create.interval) === 1;
      return hourly && Number(retain.count ?? 0) >= 1;
    });
}

export const dataVolumeSnapshotted: StackValidationPolicy = {
  name: "data-volume-snapshotted-hourly",
  description:
    "Every data volume is the target of an enabled Data Lifecycle Manager policy that snapshots it hourly.",
  enforcementLevel: "mandatory",
  validateStack: (args, reportViolation) => {
    const policies = args.resources.filter((r) => r.type === DLM_TYPE);
    for (const volume of args.resources) {
      const stack = dataVolumeStack(volume.type, volume.props);
      if (stack === undefined) continue;
      if (!policies.some((policy) => snapshotsHourly(policy, DATA_VOLUME_TAG, stack))) {
        reportViolation(
          `data volume ${volume.name} has no enabled lifecycle policy snapshotting ${DATA_VOLUME_TAG}=${stack} hourly`,
          volume.urn,
        );
      }
    }
  },
};

// ------------------------------------------------------------------------------------------- security groups

/** One ingress permission, whatever resource expressed it. */
interface Ingress {
  protocol: string;
  fromPort: number;
  toPort: number;
  cidrs: string[];
}

function ingressesOf(type: string, p: Props): Ingress[] {
  const port = (v: unknown) => (typeof v === "number" ? v : Number(v ?? 0));
  switch (type) {
    case "aws:ec2/securityGroup:SecurityGroup":
      return asArray(p.ingress)
        .filter(isObject)
        .map((r) => ({
          protocol: String(r.protocol ?? "-1"),
          fromPort: port(r.fromPort),
          toPort: port(r.toPort),
          cidrs: [...asArray(r.cidrBlocks), ...asArray(r.ipv6CidrBlocks)].map(String),
        }));
    case "aws:ec2/securityGroupRule:SecurityGroupRule":
      if (p.type !== "ingress") return [];
      return [
        {
          protocol: String(p.protocol ?? "-1"),
          fromPort: port(p.fromPort),
          toPort: port(p.toPort),
          cidrs: [...asArray(p.cidrBlocks), ...asArray(p.ipv6CidrBlocks)].map(String),
        },
      ];
    case "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule":
      return [
        {
          protocol: String(p.ipProtocol ?? "-1"),
          fromPort: port(p.fromPort),
          toPort: port(p.toPort),
          cidrs: [p.cidrIpv4, p.cidrIpv6].filter((c) => c !== undefined).map(String),
        },
      ];
    default:
      return [];
  }
}

/** All ports of a rule, as a range (protocol -1/all means every port). */
function portRange(rule: Ingress): [number, number] {
  const allProtocols = rule.protocol === "-1" || rule.protocol === "all";
  if (allProtocols || (rule.fromPort === 0 && rule.toPort === 0) || rule.fromPort === -1) return [0, 65535];
  return [rule.fromPort, rule.toPort];
}

const fromInternet = (rule: Ingress) => rule.cidrs.some((c) => WHOLE_INTERNET.has(c));

export const noInternetIngressExceptWeb: ResourceValidationPolicy = {
  name: "no-internet-ingress-except-web",
  description: "Only TCP 80 and 443 may be open to 0.0.0.0/0 or ::/0.",
  enforcementLevel: "mandatory",
  validateResource: (args, reportViolation) => {
    for (const rule of ingressesOf(args.type, args.props)) {
      if (!fromInternet(rule)) continue;
      const [from, to] = portRange(rule);
      const webOnly = rule.protocol === "tcp" && from === to && OPEN_TO_INTERNET_PORTS.has(from);
      if (!webOnly) {
        reportViolation(
          `ingress ${rule.protocol} ${from}-${to} is open to the whole internet; only TCP 80 and 443 may be`,
        );
      }
    }
  },
};

export const noSshFromInternet: ResourceValidationPolicy = {
  name: "no-ssh-from-internet",
  description: "SSH (TCP 22) is never open to 0.0.0.0/0 or ::/0, inline or as a separate rule resource.",
  enforcementLevel: "mandatory",
  validateResource: (args, reportViolation) => {
    for (const rule of ingressesOf(args.type, args.props)) {
      const [from, to] = portRange(rule);
      const tcp =
        rule.protocol === "tcp" || rule.protocol === "6" || rule.protocol === "-1" || rule.protocol === "all";
      if (fromInternet(rule) && tcp && from <= 22 && 22 <= to) {
        reportViolation("SSH (port 22) is open to the whole internet; allow it from the admin ranges only");
      }
    }
  },
};

// ------------------------------------------------------------------------------------------------ S3 buckets

const PUBLIC_ACLS = new Set(["public-read", "public-read-write", "authenticated-read", "website"]);
const PUBLIC_ACCESS_BLOCK_FLAGS = [
  "blockPublicAcls",
  "blockPublicPolicy",
  "ignorePublicAcls",
  "restrictPublicBuckets",
] as const;

function parseDocument(doc: unknown): Props | undefined {
  if (typeof doc === "string") {
    try {
      const parsed: unknown = JSON.parse(doc);
      return isObject(parsed) ? parsed : undefined;
    } catch {
      return undefined;
    }
  }
  return isObject(doc) ? doc : undefined;
}

function statementsOf(doc: unknown): Props[] {
  return asArray(parseDocument(doc)?.Statement).filter(isObject);
}

function grantsToEveryone(principal: unknown): boolean {
  if (principal === "*") return true;
  if (!isObject(principal)) return false;
  return asArray(principal.AWS).includes("*");
}

export const noPublicBucket: ResourceValidationPolicy = {
  name: "no-public-bucket",
  description: "No public bucket ACL, no bucket policy granting to everyone, public access blocks fully on.",
  enforcementLevel: "mandatory",
  validateResource: (args, reportViolation) => {
    const p = args.props;
    switch (args.type) {
      case "aws:s3/bucket:Bucket":
      case "aws:s3/bucketV2:BucketV2":
      case "aws:s3/bucketAcl:BucketAcl":
      case "aws:s3/bucketAclV2:BucketAclV2":
        if (typeof p.acl === "string" && PUBLIC_ACLS.has(p.acl))
          reportViolation(`bucket ACL ${p.acl} is public`);
        break;
      case "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock":
        for (const flag of PUBLIC_ACCESS_BLOCK_FLAGS) {
          if (p[flag] !== true) reportViolation(`the public access block must set ${flag} to true`);
        }
        break;
      case "aws:s3/bucketPolicy:BucketPolicy":
        for (const statement of statementsOf(p.policy)) {
          if (
            statement.Effect === "Allow" &&
            grantsToEveryone(statement.Principal) &&
            statement.Condition === undefined
          ) {
            reportViolation('the bucket policy allows access to everyone (Principal "*")');
          }
        }
        break;
    }
  },
};

const BUCKET_TYPES = new Set(["aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"]);
const PAB_TYPE = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock";

export const bucketsBlockPublicAccess: StackValidationPolicy = {
  name: "buckets-block-public-access",
  description: "Every bucket has a public access block with all four settings on.",
  enforcementLevel: "mandatory",
  validateStack: (args, reportViolation) => {
    const blocks = args.resources.filter((r) => r.type === PAB_TYPE);
    const covers = (block: PolicyResource, bucket: PolicyResource) =>
      (block.propertyDependencies?.bucket ?? []).some((d) => d.urn === bucket.urn) ||
      (block.props.bucket !== undefined &&
        [bucket.props.bucket, bucket.props.id].includes(block.props.bucket));
    for (const bucket of args.resources.filter((r) => BUCKET_TYPES.has(r.type))) {
      const block = blocks.find((b) => covers(b, bucket));
      if (!block) reportViolation(`bucket ${bucket.name} has no public access block`, bucket.urn);
      else if (PUBLIC_ACCESS_BLOCK_FLAGS.some((f) => block.props[f] !== true)) {
        reportViolation(`bucket ${bucket.name}'s public access block leaves a setting off`, bucket.urn);
      }
    }
  },
};

// ----------------------------------------------------------------------------------------------------- IAM

const ADMIN_MANAGED_POLICIES = new Set([
  "arn:aws:iam::aws:policy/AdministratorAccess",
  "arn:aws:iam::aws:policy/PowerUserAccess",
]);

/** An Allow statement that grants every action (or all but some) on every resource. */
export function grantsEverything(statement: Props): boolean {
  if (statement.Effect !== "Allow") return false;
  const everyAction = asArray(statement.Action).includes("*") || statement.NotAction !== undefined;
  const everyResource = asArray(statement.Resource).includes("*") || statement.NotResource !== undefined;
  return everyAction && everyResource;
}

function policyDocumentsOf(type: string, p: Props): unknown[] {
  switch (type) {
    case "aws:iam/policy:Policy":
    case "aws:iam/rolePolicy:RolePolicy":
    case "aws:iam/userPolicy:UserPolicy":
    case "aws:iam/groupPolicy:GroupPolicy":
      return [p.policy];
    case "aws:iam/role:Role":
    case "aws:iam/user:User":
    case "aws:iam/group:Group":
      return asArray(p.inlinePolicies)
        .filter(isObject)
        .map((inline) => inline.policy);
    default:
      return [];
  }
}

export const noIamStarOnStar: ResourceValidationPolicy = {
  name: "no-iam-star-action-on-star-resource",
  description: "No IAM statement allows `*` actions on `*` resources, and no administrator managed policy.",
  enforcementLevel: "mandatory",
  validateResource: (args, reportViolation) => {
    for (const doc of policyDocumentsOf(args.type, args.props)) {
      if (statementsOf(doc).some(grantsEverything)) {
        reportViolation("an IAM statement allows every action on every resource");
      }
    }
    const attached = args.props.policyArn;
    if (
      args.type.startsWith("aws:iam/") &&
      typeof attached === "string" &&
      ADMIN_MANAGED_POLICIES.has(attached)
    ) {
      reportViolation(`${attached} grants every action on every resource`);
    }
  },
};

// -------------------------------------------------------------------------------------- secrets in user data

/** Patterns of values that must never travel in user data (readable by anything that reaches IMDS). */
export const SECRET_LOOKING: readonly { what: string; pattern: RegExp }[] = [
  { what: "a private key", pattern: /-----BEGIN [A-Z ]*PRIVATE KEY-----/ },
  { what: "an AWS access key id", pattern: /\b(AKIA|ASIA)[0-9A-Z]{16}\b/ },
  { what: "a Meta access token", pattern: /\bEAA[A-Za-z0-9]{30,}/ },
  { what: "a JWT", pattern: /\beyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]+/ },
  { what: "a long hex string", pattern: /\b[0-9a-fA-F]{32,}\b/ },
  {
    what: "a secret assignment",
    pattern:
      /\b[\w-]*(secret|token|passw(or)?d|api[_-]?key|private[_-]?key)[\w-]*\s*[=:]\s*["']?[^\s"'$]{8,}/i,
  },
];

export function secretLookingIn(text: string): string | undefined {
  return SECRET_LOOKING.find(({ pattern }) => pattern.test(text))?.what;
}

function userDataTexts(type: string, p: Props): string[] {
  const decode = (v: unknown) =>
    typeof v === "string" ? Buffer.from(v, "base64").toString("utf8") : undefined;
  const texts =
    type === "aws:ec2/instance:Instance"
      ? [typeof p.userData === "string" ? p.userData : undefined, decode(p.userDataBase64)]
      : type === "aws:ec2/launchTemplate:LaunchTemplate"
        ? [decode(p.userData)]
        : [];
  return texts.filter((t): t is string => t !== undefined);
}

export const noSecretsInUserData: ResourceValidationPolicy = {
  name: "no-secrets-in-user-data",
  description:
    "User data holds nothing that looks like a secret (it is readable through the metadata service).",
  enforcementLevel: "mandatory",
  validateResource: (args, reportViolation) => {
    for (const text of userDataTexts(args.type, args.props)) {
      const what = secretLookingIn(text);
      if (what)
        reportViolation(`user data contains what looks like ${what}; pass secrets in a 0600 file instead`);
    }
  },
};

export const resourcePolicies: ResourceValidationPolicy[] = [
  imdsv2Required,
  volumesEncrypted,
  dataVolumeGuarded,
  noInternetIngressExceptWeb,
  noSshFromInternet,
  noPublicBucket,
  noIamStarOnStar,
  noSecretsInUserData,
];

export const stackPolicies: StackValidationPolicy[] = [bucketsBlockPublicAccess, dataVolumeSnapshotted];
