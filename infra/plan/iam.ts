// The instance role's permissions as data: what the host may do with its own backups, and nothing else (its
// logs stay on the VM: there is no CloudWatch log group, see components/host.ts). The host uploads dated objects under one prefix (so object ARNs need the key wildcard of that
// prefix, the only `*` here); it may read them back to restore and list that prefix, but not delete them:
// versions expire by the bucket's lifecycle rule, so a compromised host cannot erase its history.

export interface PolicyStatement {
  Sid: string;
  Effect: "Allow";
  Action: string[];
  Resource: string[];
  Condition?: Record<string, Record<string, string | string[]>>;
}

export interface PolicyDocument {
  Version: "2012-10-17";
  Statement: PolicyStatement[];
}

export interface InstancePermissionsInput {
  bucketArn: string;
  /** Key prefix of the backups, without slashes around it. */
  backupPrefix: string;
}

export function instancePolicy(input: InstancePermissionsInput): PolicyDocument {
  if (!/^[A-Za-z0-9._-]+$/.test(input.backupPrefix))
    throw new Error(`bad backup prefix ${input.backupPrefix}`);
  if (input.bucketArn.includes("*")) throw new Error("ARNs must be exact");
  return {
    Version: "2012-10-17",
    Statement: [
      {
        Sid: "WriteAndReadOwnBackups",
        Effect: "Allow",
        Action: ["s3:PutObject", "s3:GetObject", "s3:GetObjectVersion"],
        Resource: [`${input.bucketArn}/${input.backupPrefix}/*`],
      },
      {
        Sid: "ListOwnBackups",
        Effect: "Allow",
        Action: ["s3:ListBucket", "s3:ListBucketVersions"],
        Resource: [input.bucketArn],
        Condition: { StringLike: { "s3:prefix": [`${input.backupPrefix}/`, `${input.backupPrefix}/*`] } },
      },
    ],
  };
}

export const EC2_ASSUME_ROLE_POLICY = {
  Version: "2012-10-17",
  Statement: [{ Effect: "Allow", Principal: { Service: "ec2.amazonaws.com" }, Action: "sts:AssumeRole" }],
} as const;

/** A bucket policy that refuses every request not made over TLS. */
export function denyInsecureTransport(bucketArn: string) {
  return {
    Version: "2012-10-17",
    Statement: [
      {
        Sid: "DenyInsecureTransport",
        Effect: "Deny",
        Principal: "*",
        Action: "s3:*",
        Resource: [bucketArn, `${bucketArn}/*`],
        Condition: { Bool: { "aws:SecureTransport": "false" } },
      },
    ],
  };
}
