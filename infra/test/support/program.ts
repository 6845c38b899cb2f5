import * as pulumi from "@pulumi/pulumi";
import { vi } from "vitest";
import { DEBIAN_AMI_OWNER } from "../../plan/ami.js";
import type { StackConfig } from "./stack-config.js";

// Runs the Pulumi program (infra/index.ts) under Pulumi's unit-test mocks and records what it registered: every
// resource with the inputs the engine would receive (secret inputs keep their secret wrapper), every invoke,
// and the module's exports (the stack outputs).

export const ACCOUNT_ID = "123456789012";
export const ELASTIC_IP = "198.51.100.10";
/** An AMI id the mocked EC2 does not know, as AWS answers for another region's or a mistyped id. */
export const MISSING_AMI = "ami-0000000000000dead";
/** What the mocked tls.PrivateKey returns as its private key: must only ever travel as a secret. */
export const TEST_PRIVATE_KEY =
  "-----BEGIN OPENSSH PRIVATE KEY-----\nTESTKEYb3BlbnNzaC1rZXktdjEAAAAA7f3c9e1a\n-----END OPENSSH PRIVATE KEY-----\n";
export const TEST_PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITESTPUBLICKEY wagate";
/** The VM's host key, as the mocked console lookup prints it (a well-formed Ed25519 key: the parser checks). */
export const TEST_HOST_KEY =
  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKJFV9iG2LeiLjqih5U8Ok/Wt5sOK65M49cfmEo1xXGs";
/** What the host key lookup prints: the block cloud-init wrote on the console. */
export const TEST_CONSOLE_KEYS = `-----BEGIN SSH HOST KEY KEYS-----\n${TEST_HOST_KEY} root@ip-10-42-1-10\n-----END SSH HOST KEY KEYS-----\n`;

export interface Registered {
  type: string;
  name: string;
  id: string;
  inputs: Record<string, unknown>;
  state: Record<string, unknown>;
  /** `type::name` of the resources it depends on (explicit `dependsOn` and through its inputs). */
  dependencies: string[];
  /** The resource options the engine receives (invisible to `newResource`, read from the registration). */
  options: RecordedOptions;
}

export interface RecordedOptions {
  protect: boolean;
  retainOnDelete: boolean;
  deleteBeforeReplace: boolean;
  replaceOnChanges: string[];
}

const NO_OPTIONS: RecordedOptions = {
  protect: false,
  retainOnDelete: false,
  deleteBeforeReplace: false,
  replaceOnChanges: [],
};

export interface AmiAnswer {
  name: string;
  ownerId: string;
  architecture: string;
}

export interface ProgramRun {
  resources: Registered[];
  calls: { token: string; inputs: Record<string, unknown> }[];
  outputs: Record<string, unknown>;
}

/** The stack's data volume as EC2 describes it before the run (absent: a first deployment). */
export interface ExistingVolume {
  volumeId: string;
  size: number;
  snapshotId?: string;
}

export interface RunOptions {
  ami?: AmiAnswer;
  preview?: boolean;
  existingVolume?: ExistingVolume;
  /** Snapshots EC2 knows: id → size (GB) of the volume each was taken of. */
  snapshots?: Record<string, number>;
}

/** The id the mocked EC2 gives the data volume it creates. */
export const DATA_VOLUME_ID = "vol-0a1b2c3d4e5f60718";

/** The wrapper Pulumi's RPC layer puts around a secret value. */
export const SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d";
export const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";
export const isSecretWrapper = (v: unknown): v is { value: unknown } =>
  typeof v === "object" && v !== null && (v as Record<string, unknown>)[SECRET_SIG_KEY] === SECRET_SIG;

/** Replaces secret wrappers by their values (what the provider receives). */
export function unwrapSecrets(v: unknown): unknown {
  if (isSecretWrapper(v)) return unwrapSecrets(v.value);
  if (Array.isArray(v)) return v.map(unwrapSecrets);
  if (typeof v === "object" && v !== null) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, unwrapSecrets(x)]));
  }
  return v;
}

function computedState(type: string, name: string, inputs: Record<string, unknown>, id: string) {
  switch (type) {
    case "aws:s3/bucket:Bucket": {
      const bucket = String(unwrapSecrets(inputs.bucket) ?? `${name}-generated`);
      return { bucket, arn: `arn:aws:s3:::${bucket}`, id: bucket };
    }
    case "aws:iam/role:Role":
      return { name: `${name}-role`, arn: `arn:aws:iam::${ACCOUNT_ID}:role/${name}` };
    case "aws:iam/instanceProfile:InstanceProfile":
      return { name: `${name}-profile`, arn: `arn:aws:iam::${ACCOUNT_ID}:instance-profile/${name}` };
    case "aws:ec2/keyPair:KeyPair":
      return { keyName: `${name}-key` };
    case "aws:ec2/eip:Eip":
      return { publicIp: ELASTIC_IP, allocationId: "eipalloc-0123456789abcdef0" };
    case "aws:ec2/eipAssociation:EipAssociation":
      return { publicIp: ELASTIC_IP };
    case "aws:ec2/instance:Instance":
      return { arn: `arn:aws:ec2:us-east-2:${ACCOUNT_ID}:instance/${id}`, privateIp: "10.42.1.10" };
    case "aws:ebs/volume:Volume":
      return { id: DATA_VOLUME_ID, arn: `arn:aws:ec2:us-east-2:${ACCOUNT_ID}:volume/${DATA_VOLUME_ID}` };
    case "aws:dlm/lifecyclePolicy:LifecyclePolicy":
      return { arn: `arn:aws:dlm:us-east-2:${ACCOUNT_ID}:policy/${id}` };
    case "command:local:Command":
      return { stdout: TEST_CONSOLE_KEYS, stderr: "" };
    case "tls:index/privateKey:PrivateKey":
      return { privateKeyOpenssh: TEST_PRIVATE_KEY, publicKeyOpenssh: TEST_PUBLIC_KEY };
    default:
      return {};
  }
}

const DEFAULT_AMI: AmiAnswer = {
  name: "debian-13-arm64-20250814-2204",
  ownerId: DEBIAN_AMI_OWNER,
  architecture: "arm64",
};

const NO_RESULTS = "Your query returned no results. Please change your search criteria and try again.";
/** An invoke failure as the engine reports it: the program's error carries the gRPC `details`. */
const invokeError = (message: string) => Object.assign(new Error(message), { details: message });

function answer(
  token: string,
  inputs: Record<string, unknown>,
  ami: AmiAnswer,
  options: RunOptions,
): Record<string, unknown> {
  switch (token) {
    case "aws:index/getCallerIdentity:getCallerIdentity":
      return {
        accountId: ACCOUNT_ID,
        arn: `arn:aws:iam::${ACCOUNT_ID}:user/test`,
        userId: "AIDTEST",
        id: ACCOUNT_ID,
      };
    case "aws:index/getAvailabilityZones:getAvailabilityZones":
      return {
        names: ["us-east-2b", "us-east-2a", "us-east-2c"],
        zoneIds: ["use2-az2", "use2-az1", "use2-az3"],
        id: "us-east-2",
      };
    case "aws:ec2/getAmi:getAmi": {
      const filters = (inputs.filters ?? []) as { name: string; values: string[] }[];
      const imageId = filters.find((f) => f.name === "image-id")?.values[0] ?? "ami-unknown";
      if (imageId === MISSING_AMI)
        throw new Error("Your query returned no results. Please change your search criteria");
      return { id: imageId, imageId, ...ami };
    }
    case "aws:ebs/getVolume:getVolume": {
      const volume = options.existingVolume;
      if (!volume) throw invokeError(NO_RESULTS);
      return {
        id: volume.volumeId,
        volumeId: volume.volumeId,
        size: volume.size,
        snapshotId: volume.snapshotId ?? "",
      };
    }
    case "aws:ebs/getSnapshot:getSnapshot": {
      const id = ((inputs.snapshotIds ?? []) as string[])[0] ?? "";
      const size = options.snapshots?.[id];
      if (size === undefined) throw invokeError(NO_RESULTS);
      return { id, snapshotId: id, volumeSize: size, encrypted: true };
    }
    default:
      throw new Error(`unexpected invoke ${token}`);
  }
}

interface RegisterRequest {
  getName(): string;
  getType(): string;
  getDependenciesList(): string[];
  getProtect(): boolean;
  getRetainondelete(): boolean;
  getDeletebeforereplace(): boolean;
  getReplaceonchangesList(): string[];
}

/**
 * The mock monitor hands `newResource` no dependencies or options, so the registration requests are read on their
 * way to it: each carries the URNs the resource depends on and the options it was given.
 */
function recordRegistrations(resources: Registered[]): void {
  const monitor = pulumi.runtime.getMonitor() as unknown as {
    registerResource(req: RegisterRequest, callback: unknown): unknown;
  };
  const register = monitor.registerResource.bind(monitor);
  monitor.registerResource = (req, callback) => {
    const [name, type] = [req.getName(), req.getType()];
    const dependencies = req.getDependenciesList().map(keyOfUrn);
    const options: RecordedOptions = {
      protect: req.getProtect(),
      retainOnDelete: req.getRetainondelete(),
      deleteBeforeReplace: req.getDeletebeforereplace(),
      replaceOnChanges: req.getReplaceonchangesList(),
    };
    const wrapped = (error: unknown, response: unknown) => {
      const resource = resources.findLast((r) => r.name === name && r.type === type);
      if (resource) {
        resource.dependencies = dependencies;
        resource.options = options;
      }
      (callback as (e: unknown, r: unknown) => void)(error, response);
    };
    return register(req, wrapped);
  };
}

/** `type::name` from `urn:pulumi:<stack>::<project>::<parent types$>type::name`. */
function keyOfUrn(urn: string): string {
  const [, , qualifiedType = "", ...name] = urn.split("::");
  return `${qualifiedType.slice(qualifiedType.lastIndexOf("$") + 1)}::${name.join("::")}`;
}

export const keyOf = (r: Registered) => `${r.type}::${r.name}`;

/** Mocks that answer like AWS would for this program and record every resource and invoke. */
export function recordingMocks(
  resources: Registered[],
  calls: ProgramRun["calls"],
  ami: AmiAnswer = DEFAULT_AMI,
  options: RunOptions = {},
): pulumi.runtime.Mocks {
  return {
    newResource: (args) => {
      const id = `${args.name}-id`;
      const inputs = args.inputs as Record<string, unknown>;
      const state = { ...inputs, ...computedState(args.type, args.name, inputs, id) };
      resources.push({
        type: args.type,
        name: args.name,
        id,
        inputs,
        state,
        dependencies: [],
        options: NO_OPTIONS,
      });
      return { id: (state.id as string | undefined) ?? id, state };
    },
    call: (args) => {
      calls.push({ token: args.token, inputs: args.inputs as Record<string, unknown> });
      return answer(args.token, args.inputs as Record<string, unknown>, ami, options);
    },
  };
}

/** Waits until the program's outstanding registrations and invokes have all been answered. */
async function settle(): Promise<void> {
  const waitForRPCs = (pulumi.runtime as unknown as { waitForRPCs?: () => Promise<void> }).waitForRPCs;
  if (typeof waitForRPCs !== "function")
    throw new Error("@pulumi/pulumi no longer exposes runtime.waitForRPCs");
  await waitForRPCs();
}

/** Assets and archives arrive with their text, path or members as promises: await them all, in place. */
async function materialize(value: unknown): Promise<unknown> {
  const v = await value;
  if (Array.isArray(v)) return Promise.all(v.map(materialize));
  if (typeof v === "object" && v !== null) {
    const entries = await Promise.all(
      Object.entries(v).map(async ([k, x]) => [k, await materialize(x)] as const),
    );
    return Object.fromEntries(entries);
  }
  return v;
}

/** Resolves an output's value and secretness (unknowns never resolve under preview: tests run as updates). */
export async function resolve(value: unknown): Promise<{ value: unknown; secret: boolean }> {
  if (!pulumi.Output.isInstance(value)) return { value, secret: false };
  const output = value as pulumi.Output<unknown> & { isSecret: Promise<boolean> };
  const [v, secret] = await Promise.all([new Promise((r) => output.apply(r)), output.isSecret]);
  return { value: v, secret };
}

/** Runs infra/index.ts for one stack configuration; rejects when the program does. */
export async function runProgram(
  stack: string,
  config: StackConfig,
  options: RunOptions = {},
): Promise<ProgramRun> {
  const resources: Registered[] = [];
  const calls: ProgramRun["calls"] = [];
  const ami = options.ami ?? DEFAULT_AMI;
  vi.resetModules();
  pulumi.runtime.setAllConfig(config.values, config.secretKeys);
  await pulumi.runtime.setMocks(
    recordingMocks(resources, calls, ami, options),
    "wagate",
    stack,
    options.preview ?? false,
  );
  recordRegistrations(resources);
  const program = (await import("../../index.js")) as Record<string, unknown>;
  const outputs: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(program)) outputs[name] = value;
  for (const value of Object.values(outputs)) await resolve(value);
  await settle();
  for (const r of resources) r.inputs = (await materialize(r.inputs)) as Record<string, unknown>;
  return { resources, calls, outputs };
}

export const ofType = (run: ProgramRun, type: string) => run.resources.filter((r) => r.type === type);

export function only(run: ProgramRun, type: string): Registered {
  const found = ofType(run, type);
  if (found.length !== 1) throw new Error(`expected one ${type}, found ${found.length}`);
  return found[0] as Registered;
}
