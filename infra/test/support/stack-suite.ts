import { beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config.js";
import { DEBIAN_AMI_OWNER } from "../../plan/ami.js";
import { DATA_VOLUME_TAG, DLM_SERVICE_POLICY_ARN, ebsDataDevicePath } from "../../plan/data-volume.js";
import { backupBucketName } from "../../plan/names.js";
import { isDisposableStack, protectionFor } from "../../plan/protection.js";
import { planProvision } from "../../plan/provision.js";
import { resourcePolicies, stackPolicies } from "../../policy/rules.js";
import { EDGE_STEP, GATEWAY_STEP, renderHostBundle } from "../../render/bundle.js";
import { renderCloudConfig } from "../../render/cloud-init.js";
import { PROVISION_STEPS } from "../../render/provision.js";
import { policyResource, stackViolations, violations } from "./policy.js";
import {
  ACCOUNT_ID,
  DATA_VOLUME_ID,
  ELASTIC_IP,
  isSecretWrapper,
  keyOf,
  ofType,
  only,
  type ProgramRun,
  type Registered,
  resolve,
  runProgram,
  TEST_HOST_KEY,
  TEST_PRIVATE_KEY,
  TEST_PUBLIC_KEY,
  unwrapSecrets,
} from "./program.js";
import { protectionProblems } from "./protection-check.js";
import { type StackName, stackConfig, TEST_SECRETS } from "./stack-config.js";

// The properties every stack must have, asserted on the inputs the program registers under Pulumi's mocks.

/** Strings that must never appear outside a secret: the test secrets and any private key, of any kind. */
export const SECRET_STRINGS = [
  ...Object.values(TEST_SECRETS),
  TEST_PRIVATE_KEY.trim().split("\n")[1] as string,
  "PRIVATE KEY-----",
];

/** Paths (`a.b[2]`) of plain (not secret-wrapped) strings that contain a secret. */
export function plainSecretPaths(value: unknown, path = ""): string[] {
  if (isSecretWrapper(value)) return [];
  if (typeof value === "string") return SECRET_STRINGS.some((s) => value.includes(s)) ? [path] : [];
  if (Array.isArray(value)) return value.flatMap((v, i) => plainSecretPaths(v, `${path}[${i}]`));
  if (typeof value === "object" && value !== null) {
    return Object.entries(value).flatMap(([k, v]) => plainSecretPaths(v, path ? `${path}.${k}` : k));
  }
  return [];
}

const COMMAND = "command:remote:Command";
const COPY = "command:remote:CopyToRemote";
const LOCAL_COMMAND = "command:local:Command";

/** One line per remote command or copy that does not pin `hostKey`; [] when every one does. */
export function hostKeyProblems(run: ProgramRun, hostKey: string): string[] {
  const remote = [...ofType(run, COMMAND), ...ofType(run, COPY)];
  if (remote.length === 0) return ["no remote command or copy registered"];
  return remote.flatMap((r) => {
    const connection = (unwrapSecrets(r.inputs) as { connection?: { hostKey?: unknown } }).connection;
    return connection?.hostKey === hostKey
      ? []
      : [`${keyOf(r)}: hostKey ${JSON.stringify(connection?.hostKey)}`];
  });
}

export function describeStack(stack: StackName): void {
  describe(`stack ${stack}`, () => {
    let run: ProgramRun;
    const config = parseConfig(stackConfig(stack).values, new Set(stackConfig(stack).secretKeys), stack);
    const input = (r: Registered) => unwrapSecrets(r.inputs) as Record<string, unknown>;
    const named = (type: string, name: string) => {
      const found = run.resources.find((r) => r.type === type && r.name === name);
      if (!found) throw new Error(`no ${type} named ${name}`);
      return found;
    };

    beforeAll(async () => {
      run = await runProgram(stack, stackConfig(stack));
    });

    it("passes every policy on every registered resource", async () => {
      const found: string[] = [];
      for (const resource of run.resources) {
        for (const policy of resourcePolicies) {
          for (const v of await violations(policy, resource.type, input(resource), resource.options)) {
            found.push(`${policy.name} on ${keyOf(resource)}: ${v}`);
          }
        }
      }
      const all = run.resources.map((r) =>
        policyResource(r.type, r.name, unwrapSecrets(r.state) as Record<string, unknown>),
      );
      expect(all.some((r) => r.type === "aws:ebs/volume:Volume")).toBe(true);
      for (const policy of stackPolicies) found.push(...(await stackViolations(policy, all)));
      expect(found).toEqual([]);
      expect(run.resources.length).toBeGreaterThan(20);
    });

    it("opens 80 and 443 to all, SSH only to the admin ranges, and lets out only HTTP(S) and NTP", () => {
      const group = input(only(run, "aws:ec2/securityGroup:SecurityGroup"));
      const summary = (rules: unknown) =>
        (rules as { protocol: string; fromPort: number; toPort: number; cidrBlocks: string[] }[])
          .map((r) => `${r.protocol}/${r.fromPort}-${r.toPort} ${[...r.cidrBlocks].sort().join(",")}`)
          .sort();
      expect(summary(group.ingress)).toEqual(
        [
          "tcp/443-443 0.0.0.0/0",
          "tcp/80-80 0.0.0.0/0",
          `tcp/22-22 ${[...config.adminCidrs].sort().join(",")}`,
        ].sort(),
      );
      expect(summary(group.egress)).toEqual([
        "tcp/443-443 0.0.0.0/0",
        "tcp/80-80 0.0.0.0/0",
        "udp/123-123 0.0.0.0/0",
      ]);
      expect(group).not.toHaveProperty("ipv6CidrBlocks");
    });

    it("routes the public subnet through the internet gateway, without ephemeral public addresses", () => {
      const subnet = input(only(run, "aws:ec2/subnet:Subnet"));
      expect(subnet.mapPublicIpOnLaunch).toBe(false);
      const table = input(only(run, "aws:ec2/routeTable:RouteTable"));
      expect(table.routes).toEqual([
        { cidrBlock: "0.0.0.0/0", gatewayId: only(run, "aws:ec2/internetGateway:InternetGateway").id },
      ]);
      expect(input(only(run, "aws:ec2/routeTableAssociation:RouteTableAssociation")).subnetId).toBe(
        only(run, "aws:ec2/subnet:Subnet").id,
      );
    });

    it("boots the pinned Debian 13 AMI with IMDSv2 only and an encrypted gp3 root", () => {
      const vm = input(only(run, "aws:ec2/instance:Instance"));
      expect(vm.ami).toBe(config.amiId);
      expect(vm.instanceType).toBe(config.instanceType);
      expect(vm.metadataOptions).toMatchObject({ httpTokens: "required", httpPutResponseHopLimit: 1 });
      expect(vm.rootBlockDevice).toMatchObject({ encrypted: true, volumeType: "gp3" });
      expect(vm.associatePublicIpAddress).toBe(false);
      expect(vm.userData).toBe(renderCloudConfig());
      expect(vm.monitoring).toBe(config.detailedMonitoring);
      expect(vm.keyName).toBe(only(run, "aws:ec2/keyPair:KeyPair").state.keyName);
      const lookup = run.calls.find((c) => c.token === "aws:ec2/getAmi:getAmi");
      expect(lookup?.inputs).toMatchObject({
        owners: [DEBIAN_AMI_OWNER],
        filters: [{ name: "image-id", values: [config.amiId] }],
      });
    });

    it(`${isDisposableStack(stack) ? "can be destroyed completely" : "keeps its data when destroyed"}`, () => {
      const vm = only(run, "aws:ec2/instance:Instance");
      const bucket = only(run, "aws:s3/bucket:Bucket");
      const volume = only(run, "aws:ebs/volume:Volume");
      const disposable = isDisposableStack(stack);
      // The instance holds no data in any stack: never protected, its root volume goes with it.
      expect((input(vm).rootBlockDevice as Record<string, unknown>).deleteOnTermination).toBe(true);
      expect(input(vm).disableApiTermination).toBe(false);
      expect(vm.options.protect).toBe(false);
      for (const data of [volume, bucket]) {
        expect(data.options, keyOf(data)).toMatchObject({
          protect: !disposable,
          retainOnDelete: !disposable,
        });
      }
      expect(input(bucket).forceDestroy).toBe(disposable);
      expect(input(volume).finalSnapshot).toBe(!disposable);
      for (const identity of [only(run, "aws:ec2/eip:Eip"), only(run, "tls:index/privateKey:PrivateKey")]) {
        expect(identity.options.protect, keyOf(identity)).toBe(protectionFor(stack, "identity").protect);
      }
    });

    it("keeps the data on an encrypted gp3 volume of its own, in the subnet's zone, attached to the instance", () => {
      const volume = input(only(run, "aws:ebs/volume:Volume"));
      expect(volume).toMatchObject({
        type: "gp3",
        encrypted: true,
        size: config.dataVolumeSizeGb,
        availabilityZone: input(only(run, "aws:ec2/subnet:Subnet")).availabilityZone,
        tags: expect.objectContaining({ stack, [DATA_VOLUME_TAG]: stack }),
      });
      expect(volume.snapshotId).toBeUndefined();
      const attachment = only(run, "aws:ec2/volumeAttachment:VolumeAttachment");
      expect(input(attachment)).toMatchObject({
        volumeId: DATA_VOLUME_ID,
        instanceId: only(run, "aws:ec2/instance:Instance").id,
        stopInstanceBeforeDetaching: true,
      });
      expect(attachment.options.deleteBeforeReplace).toBe(true);
    });

    it("snapshots the data volume every hour through Data Lifecycle Manager, keeping snapshotRetention", () => {
      const policy = input(only(run, "aws:dlm/lifecyclePolicy:LifecyclePolicy"));
      const role = named("aws:iam/role:Role", "wagate-data-snapshots");
      expect(policy.state).toBe("ENABLED");
      expect(policy.executionRoleArn).toBe(role.state.arn);
      const details = policy.policyDetails as Record<string, unknown>;
      expect(details.targetTags).toEqual({ [DATA_VOLUME_TAG]: stack });
      expect(details.schedules).toEqual([
        expect.objectContaining({
          createRule: { interval: 1, intervalUnit: "HOURS" },
          retainRule: { count: config.snapshotRetention },
        }),
      ]);
      expect(JSON.parse(String(input(role).assumeRolePolicy)).Statement).toEqual([
        expect.objectContaining({
          Principal: { Service: "dlm.amazonaws.com" },
          Condition: { StringEquals: { "aws:SourceAccount": ACCOUNT_ID } },
        }),
      ]);
      expect(ofType(run, "aws:iam/rolePolicyAttachment:RolePolicyAttachment").map(input)).toEqual([
        { role: role.state.name, policyArn: DLM_SERVICE_POLICY_ARN },
      ]);
    });

    it(`${isDisposableStack(stack) ? "protects and retains nothing" : "protects what holds data or identity, and retains the backups"} (the options the engine receives)`, () => {
      expect(protectionProblems(run, !isDisposableStack(stack))).toEqual([]);
    });

    it("registers an ED25519 key from @pulumi/tls as the key pair", () => {
      expect(input(only(run, "tls:index/privateKey:PrivateKey"))).toMatchObject({ algorithm: "ED25519" });
      expect(input(only(run, "aws:ec2/keyPair:KeyPair")).publicKey).toBe(TEST_PUBLIC_KEY);
    });

    it("attaches an Elastic IP to the instance, moving it (old association first) to a replacement", () => {
      const eip = only(run, "aws:ec2/eip:Eip");
      expect(input(eip).domain).toBe("vpc");
      const association = only(run, "aws:ec2/eipAssociation:EipAssociation");
      expect(input(association)).toMatchObject({
        allocationId: eip.state.allocationId,
        instanceId: only(run, "aws:ec2/instance:Instance").id,
      });
      expect(association.options.deleteBeforeReplace).toBe(true);
      expect(only(run, "aws:ec2/instance:Instance").options.replaceOnChanges).toEqual(["instanceType"]);
    });

    it("keeps backups in a private, encrypted, versioned bucket with a lifecycle rule", () => {
      const name = backupBucketName(stack, ACCOUNT_ID, config.awsRegion);
      expect(input(only(run, "aws:s3/bucket:Bucket")).bucket).toBe(name);
      expect(input(only(run, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"))).toEqual({
        bucket: name,
        blockPublicAcls: true,
        blockPublicPolicy: true,
        ignorePublicAcls: true,
        restrictPublicBuckets: true,
      });
      const sse = input(
        only(run, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"),
      );
      expect(sse.rules).toEqual([
        { applyServerSideEncryptionByDefault: { sseAlgorithm: "AES256" }, bucketKeyEnabled: true },
      ]);
      expect(input(only(run, "aws:s3/bucketVersioning:BucketVersioning")).versioningConfiguration).toEqual({
        status: "Enabled",
      });
      const lifecycle = input(only(run, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"));
      expect(lifecycle.rules).toContainEqual(
        expect.objectContaining({
          status: "Enabled",
          filter: { prefix: `${stack}/` },
          expiration: { days: config.backupRetentionDays },
        }),
      );
      const policy = JSON.parse(String(input(only(run, "aws:s3/bucketPolicy:BucketPolicy")).policy));
      expect(policy.Statement).toEqual([
        expect.objectContaining({ Effect: "Deny", Condition: { Bool: { "aws:SecureTransport": "false" } } }),
      ]);
      expect(input(only(run, "aws:s3/bucketOwnershipControls:BucketOwnershipControls")).rule).toEqual({
        objectOwnership: "BucketOwnerEnforced",
      });
    });

    it("gives the instance role its own backups, without any wildcard action or resource", () => {
      const role = input(named("aws:iam/role:Role", "wagate-role"));
      expect(JSON.parse(String(role.assumeRolePolicy)).Statement).toEqual([
        { Effect: "Allow", Principal: { Service: "ec2.amazonaws.com" }, Action: "sts:AssumeRole" },
      ]);
      const attached = ofType(run, "aws:iam/rolePolicyAttachment:RolePolicyAttachment").map(
        (a) => input(a).role,
      );
      expect(attached).not.toContain(named("aws:iam/role:Role", "wagate-role").state.name);
      const statements = JSON.parse(String(input(only(run, "aws:iam/rolePolicy:RolePolicy")).policy))
        .Statement as {
        Effect: string;
        Action: string[];
        Resource: string[];
      }[];
      const bucketArn = `arn:aws:s3:::${backupBucketName(stack, ACCOUNT_ID, config.awsRegion)}`;
      for (const s of statements) {
        expect(s.Effect).toBe("Allow");
        for (const action of s.Action) expect(action).toMatch(/^s3:[A-Za-z]+$/);
        for (const resource of s.Resource) {
          expect(resource).not.toBe("*");
          const scoped = resource === bucketArn || resource === `${bucketArn}/${stack}/*`;
          expect(scoped, resource).toBe(true);
        }
      }
      expect(statements.flatMap((s) => s.Action)).not.toContain("s3:DeleteObject");
      // Nothing created that does nothing: no log group without a forwarder on the VM.
      expect(ofType(run, "aws:cloudwatch/logGroup:LogGroup")).toEqual([]);
      expect(input(only(run, "aws:iam/instanceProfile:InstanceProfile")).role).toBe(
        named("aws:iam/role:Role", "wagate-role").state.name,
      );
    });

    describe("provisioning", () => {
      const bundle = renderHostBundle({
        stack,
        domain: config.domain,
        acmeEmail: config.acmeEmail,
        acmeServer: config.acmeServer,
        rateLimit: config.rateLimit,
        waf: config.waf,
        adminCidrs: config.adminCidrs,
        gatewayImage: config.gatewayImage,
        backupBucket: backupBucketName(stack, ACCOUNT_ID, config.awsRegion),
        awsRegion: config.awsRegion,
        dataDevice: ebsDataDevicePath(DATA_VOLUME_ID),
      });
      const plan = planProvision(bundle);
      const device = ebsDataDevicePath(DATA_VOLUME_ID);
      const commands = () => ofType(run, COMMAND);
      const step = (name: string) => named(COMMAND, `wagate-${name}`);

      it("waits for SSH and cloud-init first, dialling until its timeout", () => {
        const ready = input(named(COMMAND, "wagate-ready"));
        expect(ready.connection).toMatchObject({ host: ELASTIC_IP, user: "admin", dialErrorLimit: -1 });
        expect(ready.create).toContain("cloud-init status --wait");
        expect(ready.triggers).toEqual([only(run, "aws:ec2/instance:Instance").id, device]);
        expect(named(COMMAND, "wagate-ready").dependencies).toEqual(
          expect.arrayContaining([
            "aws:ec2/eipAssociation:EipAssociation::wagate-ip",
            "aws:ec2/volumeAttachment:VolumeAttachment::wagate-data-attachment",
          ]),
        );
      });

      it("pins the host key read from the instance's console on every remote command and copy", () => {
        expect([...ofType(run, COMMAND), ...ofType(run, COPY)].length).toBeGreaterThan(
          plan.copies.length + plan.steps.length,
        );
        expect(hostKeyProblems(run, TEST_HOST_KEY)).toEqual([]);
        // The key comes from the lookup of this instance's console, in the stack's region, before any dial.
        const lookup = only(run, LOCAL_COMMAND);
        const instanceId = only(run, "aws:ec2/instance:Instance").id;
        expect(input(lookup).create).toContain(`--instance-id '${instanceId}'`);
        expect(input(lookup).create).toContain(`--region '${config.awsRegion}'`);
        expect(named(COMMAND, "wagate-ready").dependencies).toContain(keyOf(lookup));
      });

      it("boots with user data that makes one Ed25519 host key and holds no key or secret", () => {
        const userData = String(input(only(run, "aws:ec2/instance:Instance")).userData);
        expect(userData).toContain("ssh_genkeytypes: [ed25519]");
        expect(userData).not.toMatch(/PRIVATE KEY|ssh_keys|BEGIN/);
        expect(plainSecretPaths(userData)).toEqual([]);
      });

      it("serves the routes that link WhatsApp Web numbers only to wagate:adminCidrs", () => {
        const nginx = bundle.files["nginx/nginx.conf"] ?? "";
        const geo = /geo \$wagate_admin_client \{([^}]*)\}/.exec(nginx)?.[1] ?? "";
        expect(geo.match(/^\s+\S+ 1;$/gm)?.map((l) => l.trim().replace(/ 1;$/, ""))).toEqual(
          config.adminCidrs,
        );
      });

      it("copies every bundle file, as an asset, after the host is ready", () => {
        const copies = ofType(run, COPY).filter((c) => c.name.startsWith("wagate-file-"));
        expect(copies.map((c) => input(c).remotePath).sort()).toEqual(
          plan.copies.map((c) => c.remotePath).sort(),
        );
        for (const copy of copies) {
          expect(copy.dependencies).toContain(`${COMMAND}::wagate-ready`);
          const remotePath = input(copy).remotePath as string;
          const path = remotePath.slice(bundle.remoteDir.length + 1);
          expect(input(copy).source).toMatchObject({ text: bundle.files[path] });
        }
      });

      it("runs one command per bundle step, in order, each after the previous", () => {
        const stepNames = commands()
          .map((c) => c.name.replace(/^wagate-/, ""))
          .filter((n) => (PROVISION_STEPS as readonly string[]).includes(n));
        expect(stepNames).toEqual([...PROVISION_STEPS]);
        const [first, ...rest] = plan.steps;
        const before = step(first?.resourceSuffix ?? "").dependencies;
        for (const c of [
          ...ofType(run, COPY).filter((x) => x.name.startsWith("wagate-file-")),
          named(COMMAND, "wagate-gateway-env"),
          named(COMMAND, "wagate-edge-identity-key"),
        ]) {
          expect(before).toContain(keyOf(c));
        }
        rest.forEach((s, i) => {
          expect(step(s.resourceSuffix).dependencies).toContain(
            `${COMMAND}::wagate-${plan.steps[i]?.resourceSuffix}`,
          );
        });
        for (const s of plan.steps) expect(input(step(s.resourceSuffix)).create).toBe(s.command);
      });

      it("triggers each step on the instance, the data volume's device and the digest of what it uses", () => {
        const instanceId = only(run, "aws:ec2/instance:Instance").id;
        for (const s of plan.steps) {
          const triggers = input(step(s.resourceSuffix)).triggers as string[];
          expect(triggers.slice(0, 3)).toEqual([instanceId, device, s.trigger]);
          // The steps that read a secret file also carry the secret's digest (and the gateway the context's).
          if (s.name !== GATEWAY_STEP) expect(triggers).toHaveLength(s.name === EDGE_STEP ? 4 : 3);
        }
        for (const copy of ofType(run, COPY)) {
          expect((input(copy).triggers as string[]).slice(0, 2), copy.name).toEqual([instanceId, device]);
        }
      });

      it("writes the env file from stdin only, as a secret, without logs, and re-runs the gateway on change", () => {
        const env = named(COMMAND, "wagate-gateway-env");
        expect(isSecretWrapper(env.inputs.stdin)).toBe(true);
        const stdin = String(input(env).stdin);
        expect(stdin).toContain(`API_SECRET=${TEST_SECRETS["wagate:apiSecret"]}`);
        expect(stdin).toContain(`WHATSAPP_ACCESS_TOKEN=${TEST_SECRETS["wagate:whatsappAccessToken"]}`);
        expect(input(env).logging).toBe("none");
        expect(plainSecretPaths(env.inputs.create)).toEqual([]);
        const gateway = step(GATEWAY_STEP);
        expect(isSecretWrapper(gateway.inputs.triggers)).toBe(true);
        expect((input(gateway).triggers as string[]).length).toBeGreaterThan(3);
        expect(input(gateway).triggers).not.toContain(stdin);
      });

      it(
        config.gatewayImage
          ? "pulls the pinned image"
          : "ships the build context and rebuilds when it changes",
        () => {
          const context = ofType(run, COPY).filter((c) => c.name === "wagate-build-context");
          const triggers = input(step(GATEWAY_STEP)).triggers as string[];
          if (config.gatewayImage) {
            expect(context).toEqual([]);
            expect(triggers).toHaveLength(4);
            return;
          }
          const copy = input(context[0] as Registered);
          expect(copy.source).toMatchObject({
            path: expect.stringMatching(new RegExp(`^\\.local/pulumi/${stack}/src-[0-9a-f]{16}$`)),
          });
          const install = input(named(COMMAND, "wagate-build-context-install"));
          const digest = (install.triggers as string[])[2] as string;
          expect(digest).toMatch(/^[0-9a-f]{64}$/);
          expect(triggers).toContain(digest);
          expect(step(plan.steps[0]?.resourceSuffix ?? "").dependencies).toContain(
            `${COMMAND}::wagate-build-context-install`,
          );
        },
      );
    });

    it("exports the URL, address, instance, SSH user, host key, and the private key as a secret", async () => {
      expect(await resolve(run.outputs.url)).toEqual({ value: `https://${config.domain}`, secret: false });
      expect(await resolve(run.outputs.publicIp)).toEqual({ value: ELASTIC_IP, secret: false });
      expect((await resolve(run.outputs.instanceId)).value).toBe(only(run, "aws:ec2/instance:Instance").id);
      expect(await resolve(run.outputs.sshUser)).toEqual({ value: "admin", secret: false });
      expect(await resolve(run.outputs.privateKey)).toEqual({ value: TEST_PRIVATE_KEY, secret: true });
      expect(await resolve(run.outputs.dataVolumeId)).toEqual({ value: DATA_VOLUME_ID, secret: false });
      expect(await resolve(run.outputs.sshHostKey)).toEqual({ value: TEST_HOST_KEY, secret: false });
    });

    it("puts no secret in any non-secret input or output", async () => {
      const leaks = run.resources.flatMap((r) => plainSecretPaths(r.inputs).map((p) => `${keyOf(r)}: ${p}`));
      expect(leaks).toEqual([]);
      for (const [name, value] of Object.entries(run.outputs)) {
        const resolved = await resolve(value);
        if (!resolved.secret) expect(plainSecretPaths(resolved.value), name).toEqual([]);
      }
      // The scan itself finds what it looks for: the env command's stdin does hold the secrets, wrapped.
      const env = named(COMMAND, "wagate-gateway-env");
      expect(plainSecretPaths(unwrapSecrets(env.inputs))).not.toEqual([]);
    });
  });
}
