import { beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config.js";
import { DEBIAN_AMI_OWNER } from "../../plan/ami.js";
import { backupBucketName } from "../../plan/names.js";
import { isDisposableStack } from "../../plan/protection.js";
import { planProvision } from "../../plan/provision.js";
import { resourcePolicies, stackPolicies } from "../../policy/rules.js";
import { GATEWAY_STEP, renderHostBundle } from "../../render/bundle.js";
import { PROVISION_STEPS } from "../../render/provision.js";
import { policyResource, stackViolations, violations } from "./policy.js";
import {
  ACCOUNT_ID,
  ELASTIC_IP,
  isSecretWrapper,
  keyOf,
  ofType,
  only,
  type ProgramRun,
  type Registered,
  resolve,
  runProgram,
  TEST_PRIVATE_KEY,
  TEST_PUBLIC_KEY,
  unwrapSecrets,
} from "./program.js";
import { type StackName, stackConfig, TEST_SECRETS } from "./stack-config.js";

// The properties every stack must have, asserted on the inputs the program registers under Pulumi's mocks.

/** Strings that must never appear outside a secret. */
export const SECRET_STRINGS = [
  ...Object.values(TEST_SECRETS),
  TEST_PRIVATE_KEY.trim().split("\n")[1] as string,
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
          for (const v of await violations(policy, resource.type, input(resource))) {
            found.push(`${policy.name} on ${keyOf(resource)}: ${v}`);
          }
        }
      }
      const all = run.resources.map((r) =>
        policyResource(r.type, r.name, unwrapSecrets(r.state) as Record<string, unknown>),
      );
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

    it("boots the pinned Debian 12 AMI with IMDSv2 only and an encrypted gp3 root", () => {
      const vm = input(only(run, "aws:ec2/instance:Instance"));
      expect(vm.ami).toBe(config.amiId);
      expect(vm.instanceType).toBe(config.instanceType);
      expect(vm.metadataOptions).toMatchObject({ httpTokens: "required", httpPutResponseHopLimit: 1 });
      expect(vm.rootBlockDevice).toMatchObject({ encrypted: true, volumeType: "gp3" });
      expect(vm.associatePublicIpAddress).toBe(false);
      expect(vm.userData).toBeUndefined();
      expect(vm.monitoring).toBe(config.detailedMonitoring);
      expect(vm.keyName).toBe(only(run, "aws:ec2/keyPair:KeyPair").state.keyName);
      const lookup = run.calls.find((c) => c.token === "aws:ec2/getAmi:getAmi");
      expect(lookup?.inputs).toMatchObject({
        owners: [DEBIAN_AMI_OWNER],
        filters: [{ name: "image-id", values: [config.amiId] }],
      });
    });

    it(`${isDisposableStack(stack) ? "can be destroyed completely" : "keeps its data when destroyed"}`, () => {
      const vm = input(only(run, "aws:ec2/instance:Instance"));
      const bucket = input(only(run, "aws:s3/bucket:Bucket"));
      const disposable = isDisposableStack(stack);
      expect((vm.rootBlockDevice as Record<string, unknown>).deleteOnTermination).toBe(disposable);
      expect(vm.disableApiTermination).toBe(!disposable);
      expect(bucket.forceDestroy).toBe(disposable);
    });

    it("registers an ED25519 key from @pulumi/tls as the key pair", () => {
      expect(input(only(run, "tls:index/privateKey:PrivateKey"))).toMatchObject({ algorithm: "ED25519" });
      expect(input(only(run, "aws:ec2/keyPair:KeyPair")).publicKey).toBe(TEST_PUBLIC_KEY);
    });

    it("attaches an Elastic IP to the instance", () => {
      const eip = only(run, "aws:ec2/eip:Eip");
      expect(input(eip).domain).toBe("vpc");
      expect(input(only(run, "aws:ec2/eipAssociation:EipAssociation"))).toMatchObject({
        allocationId: eip.state.allocationId,
        instanceId: only(run, "aws:ec2/instance:Instance").id,
      });
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

    it("gives the instance role its own backups and logs, without any wildcard action or resource", () => {
      const role = input(only(run, "aws:iam/role:Role"));
      expect(JSON.parse(String(role.assumeRolePolicy)).Statement).toEqual([
        { Effect: "Allow", Principal: { Service: "ec2.amazonaws.com" }, Action: "sts:AssumeRole" },
      ]);
      expect(ofType(run, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")).toEqual([]);
      const statements = JSON.parse(String(input(only(run, "aws:iam/rolePolicy:RolePolicy")).policy))
        .Statement as {
        Effect: string;
        Action: string[];
        Resource: string[];
      }[];
      const bucketArn = `arn:aws:s3:::${backupBucketName(stack, ACCOUNT_ID, config.awsRegion)}`;
      const logGroupArn = String(only(run, "aws:cloudwatch/logGroup:LogGroup").state.arn);
      for (const s of statements) {
        expect(s.Effect).toBe("Allow");
        for (const action of s.Action) expect(action).toMatch(/^(s3|logs):[A-Za-z]+$/);
        for (const resource of s.Resource) {
          expect(resource).not.toBe("*");
          const scoped =
            resource === bucketArn ||
            resource === `${bucketArn}/${stack}/*` ||
            resource === logGroupArn ||
            resource === `${logGroupArn}:log-stream:*`;
          expect(scoped, resource).toBe(true);
        }
      }
      expect(statements.flatMap((s) => s.Action)).not.toContain("s3:DeleteObject");
      expect(input(only(run, "aws:iam/instanceProfile:InstanceProfile")).role).toBe(
        only(run, "aws:iam/role:Role").state.name,
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
      });
      const plan = planProvision(bundle);
      const commands = () => ofType(run, COMMAND);
      const step = (name: string) => named(COMMAND, `wagate-${name}`);

      it("waits for SSH and cloud-init first, dialling until its timeout", () => {
        const ready = input(named(COMMAND, "wagate-ready"));
        expect(ready.connection).toMatchObject({ host: ELASTIC_IP, user: "admin", dialErrorLimit: -1 });
        expect(ready.create).toContain("cloud-init status --wait");
        expect(ready.triggers).toEqual([only(run, "aws:ec2/instance:Instance").id]);
        expect(named(COMMAND, "wagate-ready").dependencies).toContain(
          "aws:ec2/eipAssociation:EipAssociation::wagate-ip",
        );
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

      it("triggers each step on the instance and the digest of what it uses", () => {
        const instanceId = only(run, "aws:ec2/instance:Instance").id;
        for (const s of plan.steps) {
          const triggers = input(step(s.resourceSuffix)).triggers as string[];
          expect(triggers.slice(0, 2)).toEqual([instanceId, s.trigger]);
          if (s.name !== GATEWAY_STEP) expect(triggers).toHaveLength(2);
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
        expect((input(gateway).triggers as string[]).length).toBeGreaterThan(2);
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
            expect(triggers).toHaveLength(3);
            return;
          }
          const copy = input(context[0] as Registered);
          expect(copy.source).toMatchObject({
            path: expect.stringMatching(new RegExp(`^\\.local/pulumi/${stack}/src-[0-9a-f]{16}$`)),
          });
          const install = input(named(COMMAND, "wagate-build-context-install"));
          const digest = (install.triggers as string[])[1] as string;
          expect(digest).toMatch(/^[0-9a-f]{64}$/);
          expect(triggers).toContain(digest);
          expect(step(plan.steps[0]?.resourceSuffix ?? "").dependencies).toContain(
            `${COMMAND}::wagate-build-context-install`,
          );
        },
      );
    });

    it("exports the URL, address, instance, SSH user, and the private key as a secret", async () => {
      expect(await resolve(run.outputs.url)).toEqual({ value: `https://${config.domain}`, secret: false });
      expect(await resolve(run.outputs.publicIp)).toEqual({ value: ELASTIC_IP, secret: false });
      expect((await resolve(run.outputs.instanceId)).value).toBe(only(run, "aws:ec2/instance:Instance").id);
      expect(await resolve(run.outputs.sshUser)).toEqual({ value: "admin", secret: false });
      expect(await resolve(run.outputs.privateKey)).toEqual({ value: TEST_PRIVATE_KEY, secret: true });
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
