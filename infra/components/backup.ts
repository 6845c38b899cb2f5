import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { denyInsecureTransport } from "../plan/iam.js";
import type { Protection } from "../plan/protection.js";

export interface BackupArgs {
  /** Global S3 name (plan/names.ts). */
  bucketName: string;
  /** Key prefix the host writes its backups under (its stack name). */
  prefix: string;
  retentionDays: number;
  protection: Protection;
  tags: Record<string, string>;
}

/** The backups bucket: private, encrypted, versioned, TLS only, old backups expired by a lifecycle rule. */
export class Backup extends pulumi.ComponentResource {
  readonly bucketName: pulumi.Output<string>;
  readonly bucketArn: pulumi.Output<string>;

  constructor(name: string, args: BackupArgs, opts?: pulumi.ComponentResourceOptions) {
    super("wagate:backup:Backup", name, {}, opts);
    const { protect, retainOnDelete, forceDestroyBucket } = args.protection;
    const parent = { parent: this };
    // The bucket and what keeps it private share its fate: protected and retained together.
    const guarded = { parent: this, protect, retainOnDelete };

    const bucket = new aws.s3.Bucket(
      `${name}-bucket`,
      { bucket: args.bucketName, forceDestroy: forceDestroyBucket, tags: { ...args.tags, Name: name } },
      guarded,
    );
    const privacy = new aws.s3.BucketPublicAccessBlock(
      `${name}-private`,
      {
        bucket: bucket.id,
        blockPublicAcls: true,
        blockPublicPolicy: true,
        ignorePublicAcls: true,
        restrictPublicBuckets: true,
      },
      guarded,
    );
    new aws.s3.BucketOwnershipControls(
      `${name}-ownership`,
      { bucket: bucket.id, rule: { objectOwnership: "BucketOwnerEnforced" } },
      guarded,
    );
    new aws.s3.BucketServerSideEncryptionConfiguration(
      `${name}-encryption`,
      {
        bucket: bucket.id,
        rules: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: "AES256" }, bucketKeyEnabled: true }],
      },
      guarded,
    );
    const versioning = new aws.s3.BucketVersioning(
      `${name}-versioning`,
      { bucket: bucket.id, versioningConfiguration: { status: "Enabled" } },
      guarded,
    );
    new aws.s3.BucketLifecycleConfiguration(
      `${name}-lifecycle`,
      {
        bucket: bucket.id,
        rules: [
          {
            id: "expire-old-backups",
            status: "Enabled",
            filter: { prefix: `${args.prefix}/` },
            expiration: { days: args.retentionDays },
            // An expired (or overwritten) backup stays recoverable for a week as a noncurrent version.
            noncurrentVersionExpiration: { noncurrentDays: 7 },
            abortIncompleteMultipartUpload: { daysAfterInitiation: 1 },
          },
          {
            id: "remove-expired-delete-markers",
            status: "Enabled",
            filter: { prefix: `${args.prefix}/` },
            expiration: { expiredObjectDeleteMarker: true },
          },
        ],
      },
      { ...parent, dependsOn: [versioning] },
    );
    new aws.s3.BucketPolicy(
      `${name}-tls-only`,
      { bucket: bucket.id, policy: bucket.arn.apply((arn) => JSON.stringify(denyInsecureTransport(arn))) },
      // A bucket policy is only accepted once the public access block is in place to vet it.
      { ...guarded, dependsOn: [privacy] },
    );

    this.bucketName = bucket.bucket;
    this.bucketArn = bucket.arn;
    this.registerOutputs({ bucketName: this.bucketName, bucketArn: this.bucketArn });
  }
}
