import { fileURLToPath } from "node:url";
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { Backup } from "./components/backup.js";
import { DataVolume, verifyDataVolume } from "./components/data-volume.js";
import { Dns } from "./components/dns.js";
import { Host, verifyDebianAmi } from "./components/host.js";
import { HostKey } from "./components/host-key.js";
import { Network } from "./components/network.js";
import { Provision } from "./components/provision.js";
import { gatewayEnvOf, loadConfig } from "./config.js";
import { prepareBuildContext } from "./plan/build-context.js";
import { backupBucketName } from "./plan/names.js";
import { protectionFor } from "./plan/protection.js";
import { renderHostBundle } from "./render/bundle.js";
import { renderEdgeIdentityKey } from "./render/edge-identity-key.js";
import { renderGatewayEnvFile } from "./render/gateway-env.js";

// Wiring only: configuration in, components connected, outputs out. Every decision lives in plan/ or render/.

const config = loadConfig();
const { stack } = config;
const tags = { project: "wagate", stack };

// Looked up before any resource: the account id makes the bucket's global name (so the bundle that holds it is
// plain data, rendered and hashed up front), and a wrong AMI stops the program cleanly.
const { accountId } = await aws.getCallerIdentity({});
const bucketName = backupBucketName(stack, accountId, config.awsRegion);
const amiId = await verifyDebianAmi(config.amiId, config.instanceType);
await verifyDataVolume(stack, { sizeGb: config.dataVolumeSizeGb, snapshotId: config.dataSnapshotId });

const network = new Network("wagate", { adminCidrs: config.adminCidrs, tags });
const backup = new Backup("wagate-backups", {
  bucketName,
  prefix: stack,
  retentionDays: config.backupRetentionDays,
  protection: protectionFor(stack, "data"),
  tags,
});
const host = new Host("wagate", {
  stack,
  amiId,
  instanceType: config.instanceType,
  detailedMonitoring: config.detailedMonitoring,
  subnetId: network.subnetId,
  securityGroupId: network.securityGroupId,
  backupBucketArn: backup.bucketArn,
  backupPrefix: stack,
  identityProtection: protectionFor(stack, "identity"),
  tags,
});
// The data outlives the instance: made in the subnet's zone (not the instance's), attached to whichever instance runs.
const data = new DataVolume("wagate-data", {
  stack,
  accountId,
  availabilityZone: network.availabilityZone,
  sizeGb: config.dataVolumeSizeGb,
  snapshotId: config.dataSnapshotId,
  snapshotRetention: config.snapshotRetention,
  snapshotCopyRegion: config.snapshotCopyRegion,
  instanceId: host.instanceId,
  protection: protectionFor(stack, "data"),
  tags,
});
// Read from the VM's first-boot console through EC2's API, then pinned by every SSH connection.
const hostKey = new HostKey("wagate", { instanceId: host.instanceId, region: config.awsRegion });
const dns = config.hostedZoneId
  ? new Dns("wagate", { hostedZoneId: config.hostedZoneId, domain: config.domain, address: host.elasticIp })
  : undefined;

if (config.provision) {
  const gatewayEnv = pulumi.secret(gatewayEnvOf(config).apply(renderGatewayEnvFile));
  new Provision("wagate", {
    host: host.publicIp,
    user: host.sshUser,
    privateKey: host.privateKey,
    hostKey: hostKey.publicKey,
    instanceId: host.instanceId,
    dataDevice: data.devicePath,
    bundle: (dataDevice) =>
      renderHostBundle({
        stack,
        domain: config.domain,
        acmeEmail: config.acmeEmail,
        acmeServer: config.acmeServer,
        rateLimit: config.rateLimit,
        waf: config.waf,
        adminCidrs: config.adminCidrs,
        trustedCidrs: config.trustedCidrs,
        gatewayImage: config.gatewayImage,
        backupBucket: bucketName,
        awsRegion: config.awsRegion,
        dataDevice,
      }),
    gatewayEnv,
    // The edge verifies tokens with the key, issuer and audience the gateway reads from that env file.
    edgeIdentityKey: pulumi.secret(gatewayEnv.apply(renderEdgeIdentityKey)),
    buildContext: config.gatewayImage
      ? undefined
      : prepareBuildContext(fileURLToPath(new URL("..", import.meta.url)), `.local/pulumi/${stack}`),
    // The host is reached once the data volume is attached (the provisioning mounts it) and the name resolves.
    dependsOn: [data.attachment, ...(dns ? [dns.record] : [])],
  });
}

export const url = `https://${config.domain}`;
export const publicIp = host.publicIp;
export const instanceId = host.instanceId;
export const sshUser = host.sshUser;
export const privateKey = host.privateKey;
/** For `known_hosts`: `<publicIp> <sshHostKey>`. */
export const sshHostKey = hostKey.publicKey;
export const backupBucket = bucketName;
export const dataVolumeId = data.volumeId;
