import { describe, expect, it } from "vitest";
import { EDGE_STEP, GATEWAY_STEP } from "../render/bundle.js";
import {
  ELASTIC_IP,
  keyOf,
  MISSING_AMI,
  ofType,
  only,
  type ProgramRun,
  runProgram,
  unwrapSecrets,
} from "./support/program.js";
import { type StackConfig, stackConfig, TEST_SECRETS } from "./support/stack-config.js";

// The program under settings the stack files do not use, and under configurations it must refuse.

const COMMAND = "command:remote:Command";
const COPY = "command:remote:CopyToRemote";

function devWith(change: (c: StackConfig) => void): StackConfig {
  const config = stackConfig("dev");
  change(config);
  return config;
}

const triggers = (run: ProgramRun) =>
  Object.fromEntries(
    [...ofType(run, COMMAND), ...ofType(run, COPY)].map((r) => [r.name, unwrapSecrets(r.inputs.triggers)]),
  );

describe("optional settings", () => {
  it("creates the DNS record when a hosted zone is given, before the host is provisioned", async () => {
    const run = await runProgram(
      "dev",
      devWith((c) => {
        c.values["wagate:hostedZoneId"] = "Z0123456789ABCDEFGHIJ";
      }),
    );
    const record = only(run, "aws:route53/record:Record");
    expect(unwrapSecrets(record.inputs)).toMatchObject({
      zoneId: "Z0123456789ABCDEFGHIJ",
      name: "dev.gateway.example.com",
      type: "A",
      records: [ELASTIC_IP],
    });
    const ready = run.resources.find((r) => r.type === COMMAND && r.name === "wagate-ready");
    expect(ready?.dependencies).toContain(keyOf(record));
  });

  it("makes no DNS record without a hosted zone", async () => {
    const run = await runProgram("dev", stackConfig("dev"));
    expect(ofType(run, "aws:route53/record:Record")).toEqual([]);
  });

  it("pulls a digest-pinned image instead of shipping the build context", async () => {
    const image = `ghcr.io/example/wagate@sha256:${"c3".repeat(32)}`;
    const run = await runProgram(
      "dev",
      devWith((c) => {
        c.values["wagate:gatewayImage"] = image;
      }),
    );
    expect(run.resources.filter((r) => r.name.startsWith("wagate-build-context"))).toEqual([]);
    const unit = ofType(run, COPY).find((r) => r.name === "wagate-file-systemd-wagate-gateway-service");
    expect(JSON.stringify(unit?.inputs.source)).toContain(image);
  });

  it("creates only the infrastructure when provisioning is off", async () => {
    const run = await runProgram(
      "dev",
      devWith((c) => {
        c.values["wagate:provision"] = "false";
      }),
    );
    expect([...ofType(run, COMMAND), ...ofType(run, COPY)]).toEqual([]);
    expect(ofType(run, "aws:ec2/instance:Instance")).toHaveLength(1);
  });

  it("runs the sandbox transport when WhatsApp is not configured", async () => {
    const run = await runProgram(
      "dev",
      devWith((c) => {
        for (const k of [
          "whatsappAccessToken",
          "whatsappAppSecret",
          "whatsappVerifyToken",
          "whatsappPhoneNumberId",
        ]) {
          delete c.values[`wagate:${k}`];
        }
        c.secretKeys = ["wagate:apiSecret"];
      }),
    );
    const env = run.resources.find((r) => r.name === "wagate-gateway-env");
    const stdin = String(unwrapSecrets(env?.inputs.stdin));
    expect(stdin).toContain("WHATSAPP_TRANSPORT=sandbox");
    expect(stdin).not.toContain("WHATSAPP_ACCESS_TOKEN");
  });
});

describe("the data volume across updates", () => {
  const SNAPSHOT = "snap-0fedcba9876543210";
  const volumeOf = (run: ProgramRun) => unwrapSecrets(only(run, "aws:ebs/volume:Volume").inputs);

  it("grows in place: a size at or above the current volume's is accepted", async () => {
    for (const size of ["20", "50"]) {
      const run = await runProgram(
        "dev",
        devWith((c) => {
          c.values["wagate:dataVolumeSizeGb"] = size;
        }),
        { existingVolume: { volumeId: "vol-0123456789abcdef0", size: 20 } },
      );
      expect(volumeOf(run)).toMatchObject({ size: Number(size) });
    }
  });

  it("copies the hourly snapshots to wagate:snapshotCopyRegion", async () => {
    const run = await runProgram(
      "dev",
      devWith((c) => {
        c.values["wagate:snapshotCopyRegion"] = "us-west-2";
      }),
    );
    const details = unwrapSecrets(
      only(run, "aws:dlm/lifecyclePolicy:LifecyclePolicy").inputs.policyDetails,
    ) as {
      schedules: { crossRegionCopyRules: unknown }[];
    };
    expect(details.schedules[0]?.crossRegionCopyRules).toEqual([
      expect.objectContaining({ target: "us-west-2", encrypted: true }),
    ]);
  });

  it("is made from wagate:dataSnapshotId, and stays so while the key is kept", async () => {
    const restore = devWith((c) => {
      c.values["wagate:dataSnapshotId"] = SNAPSHOT;
    });
    const first = await runProgram("dev", restore, { snapshots: { [SNAPSHOT]: 10 } });
    expect(volumeOf(first)).toMatchObject({ snapshotId: SNAPSHOT, size: 10 });
    const again = await runProgram("dev", restore, {
      snapshots: { [SNAPSHOT]: 10 },
      existingVolume: { volumeId: "vol-0123456789abcdef0", size: 10, snapshotId: SNAPSHOT },
    });
    expect(volumeOf(again)).toEqual(volumeOf(first));
  });
});

describe("re-runs", () => {
  it("a second run with nothing changed registers identical inputs: no command runs again", async () => {
    const first = await runProgram("staging", stackConfig("staging"));
    const second = await runProgram("staging", stackConfig("staging"));
    const inputs = (run: ProgramRun) => Object.fromEntries(run.resources.map((r) => [keyOf(r), r.inputs]));
    expect(inputs(second)).toEqual(inputs(first));
  });

  it("rotating the API secret re-runs the env file, the edge's key, nginx's and the gateway's steps, nothing else", async () => {
    const before = await runProgram("dev", stackConfig("dev"));
    const after = await runProgram(
      "dev",
      devWith((c) => {
        c.values["wagate:apiSecret"] = "ab".repeat(32);
      }),
    );
    const [a, b] = [triggers(before), triggers(after)];
    const changed = Object.keys(b).filter((name) => JSON.stringify(a[name]) !== JSON.stringify(b[name]));
    // Triggers: the steps that read the secrets. The two commands that write them run again because their
    // stdin (an input) changed.
    expect(changed).toEqual([`wagate-${EDGE_STEP}`, `wagate-${GATEWAY_STEP}`]);
    const stdin = (run: ProgramRun, name: string) =>
      unwrapSecrets(run.resources.find((r) => r.name === name)?.inputs.stdin);
    expect(stdin(after, "wagate-gateway-env")).not.toEqual(stdin(before, "wagate-gateway-env"));
    expect(String(stdin(after, "wagate-gateway-env"))).toContain(`API_SECRET=${"ab".repeat(32)}`);
    expect(JSON.parse(String(stdin(after, "wagate-edge-identity-key"))).secret).toBe("ab".repeat(32));
  });
});

describe("a new amiId or instanceType replaces the instance only: nothing that holds data", () => {
  const prodWith = (change: (c: StackConfig) => void) => {
    const config = stackConfig("prod");
    config.values["wagate:hostedZoneId"] = "Z0123456789ABCDEFGHIJ";
    change(config);
    return config;
  };
  /** Every resource that (transitively) takes an input or a dependency from `root`: what its replacement reaches. */
  const dependentsOf = (run: ProgramRun, root: string) => {
    const direct = new Map(run.resources.map((r) => [keyOf(r), r.dependencies]));
    const reaches = (key: string, seen = new Set<string>()): boolean =>
      (direct.get(key) ?? []).some((d) => d === root || (!seen.has(d) && seen.add(d) && reaches(d, seen)));
    return run.resources.map(keyOf).filter((key) => reaches(key));
  };
  const INSTANCE = "aws:ec2/instance:Instance::wagate-vm";
  const HOLDS_DATA_OR_IDENTITY = [
    "aws:ebs/volume:Volume",
    "aws:dlm/lifecyclePolicy:LifecyclePolicy",
    "aws:s3/bucket:Bucket",
    "aws:s3/bucketVersioning:BucketVersioning",
    "aws:ec2/eip:Eip",
    "aws:ec2/keyPair:KeyPair",
    "tls:index/privateKey:PrivateKey",
    "aws:route53/record:Record",
  ];

  it("the dependency walk finds a data holder that takes an input from the instance, even indirectly", () => {
    const resource = (type: string, name: string, dependencies: string[]) => ({
      type,
      name,
      id: `${name}-id`,
      inputs: {},
      state: {},
      dependencies,
      options: { protect: false, retainOnDelete: false, deleteBeforeReplace: false, replaceOnChanges: [] },
    });
    // A volume placed in "the instance's zone" (read from the instance) instead of the subnet's.
    const broken: ProgramRun = {
      resources: [
        resource("aws:ec2/instance:Instance", "wagate-vm", []),
        resource("pulumi:pulumi:StackReference", "zone", [INSTANCE]),
        resource("aws:ebs/volume:Volume", "wagate-data-volume", ["pulumi:pulumi:StackReference::zone"]),
        resource("aws:s3/bucket:Bucket", "wagate-backups-bucket", []),
      ],
      calls: [],
      outputs: {},
    };
    expect(dependentsOf(broken, INSTANCE)).toEqual([
      "pulumi:pulumi:StackReference::zone",
      "aws:ebs/volume:Volume::wagate-data-volume",
    ]);
  });

  it.each([
    ["amiId", "ami-0fedcba9876543210"],
    ["instanceType", "t4g.medium"],
  ])("changing %s", async (key, value) => {
    const before = await runProgram(
      "prod",
      prodWith(() => {}),
    );
    const after = await runProgram(
      "prod",
      prodWith((c) => {
        c.values[`wagate:${key}`] = value;
      }),
    );
    const inputs = (run: ProgramRun) => Object.fromEntries(run.resources.map((r) => [keyOf(r), r.inputs]));
    const [a, b] = [inputs(before), inputs(after)];
    expect(Object.keys(b).sort()).toEqual(Object.keys(a).sort());
    // The engine sees a change on the instance alone; everything else follows from its new id, if at all.
    const changed = Object.keys(b).filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]));
    expect(changed).toEqual([INSTANCE]);
    const vm = only(after, "aws:ec2/instance:Instance");
    expect(vm.options).toMatchObject({ protect: false, replaceOnChanges: ["instanceType"] });

    const reached = dependentsOf(after, INSTANCE);
    for (const type of HOLDS_DATA_OR_IDENTITY) {
      const resources = ofType(after, type);
      expect(resources.length, type).toBeGreaterThan(0);
      for (const r of resources) expect(reached, keyOf(r)).not.toContain(keyOf(r));
    }
    // What a new instance id does replace: the volume's attachment and the address's association (each removed
    // before its successor is made, as a volume and an address belong to one instance at a time), and the
    // provisioning, which runs again on the new host, after the new host's key is read from its console.
    const aws = reached.filter((k) => k.startsWith("aws:"));
    expect(aws.sort()).toEqual([
      "aws:ec2/eipAssociation:EipAssociation::wagate-ip",
      "aws:ec2/volumeAttachment:VolumeAttachment::wagate-data-attachment",
    ]);
    for (const k of aws) {
      const r = after.resources.find((x) => keyOf(x) === k) as (typeof after.resources)[number];
      expect(r.options.deleteBeforeReplace, k).toBe(true);
    }
    expect(reached.filter((k) => k.startsWith("command:")).length).toBe(
      [...ofType(after, COMMAND), ...ofType(after, COPY), ...ofType(after, "command:local:Command")].length,
    );
    expect(reached).toContain(keyOf(only(after, "command:local:Command")));
    const volume = only(after, "aws:ebs/volume:Volume");
    expect(volume.options).toMatchObject({ protect: true, retainOnDelete: true });
  });
});

describe("refused configurations stop the program before any resource", () => {
  it.each([
    ["a plain-text API secret", (c: StackConfig) => (c.secretKeys = []), "wagate:apiSecret:"],
    ["a missing domain", (c: StackConfig) => delete c.values["wagate:domain"], "wagate:domain:"],
    [
      "SSH from everywhere",
      (c: StackConfig) => (c.values["wagate:adminCidrs"] = '["0.0.0.0/0"]'),
      "wagate:adminCidrs:",
    ],
    ["a short API secret", (c: StackConfig) => (c.values["wagate:apiSecret"] = "abcd"), "wagate:apiSecret:"],
  ])("%s", async (_, change, key) => {
    let registered = 0;
    const attempt = runProgram("dev", devWith(change)).then((run) => {
      registered = run.resources.length;
    });
    await expect(attempt).rejects.toThrow(key);
    expect(registered).toBe(0);
    await attempt.catch((error: Error) => {
      for (const secret of Object.values(TEST_SECRETS)) expect(error.message).not.toContain(secret);
    });
  });

  const DEBIAN_13 = { name: "debian-13-arm64-20250814-2204", ownerId: "136693071363", architecture: "arm64" };
  it.each([
    [
      "a Debian 12 image",
      { ...DEBIAN_13, name: "debian-12-arm64-20250428-2096" },
      /\(Debian 12\); this stack runs Debian 13/,
    ],
    ["another publisher's image", { ...DEBIAN_13, ownerId: "099720109477" }, /not published by Debian/],
    [
      "an image for another architecture",
      { ...DEBIAN_13, name: "debian-13-amd64-20250814-2204", architecture: "x86_64" },
      /needs arm64/,
    ],
  ])("an AMI that is %s", async (_, ami, problem) => {
    let registered = 0;
    const attempt = runProgram("dev", stackConfig("dev"), { ami }).then((run) => {
      registered = run.resources.length;
    });
    await expect(attempt).rejects.toThrow(/^wagate:amiId: /);
    await expect(attempt).rejects.toThrow(problem);
    expect(registered).toBe(0);
  });

  const EXISTING = { volumeId: "vol-0123456789abcdef0", size: 20 };
  it.each([
    [
      "a data volume smaller than the one in place",
      (c: StackConfig) => (c.values["wagate:dataVolumeSizeGb"] = "10"),
      { existingVolume: EXISTING },
      /^wagate:dataVolumeSizeGb: 10 is below the current data volume vol-0123456789abcdef0 \(20 GB\)/,
    ],
    [
      "a restore into a volume smaller than its snapshot",
      (c: StackConfig) => {
        c.values["wagate:dataVolumeSizeGb"] = "10";
        c.values["wagate:dataSnapshotId"] = "snap-0fedcba9876543210";
      },
      { snapshots: { "snap-0fedcba9876543210": 30 } },
      /^wagate:dataVolumeSizeGb: 10 is below the size of snapshot snap-0fedcba9876543210/,
    ],
    [
      "a snapshot that does not exist",
      (c: StackConfig) => (c.values["wagate:dataSnapshotId"] = "snap-0fedcba9876543210"),
      {},
      /^wagate:dataSnapshotId: snap-0fedcba9876543210 does not exist/,
    ],
    [
      "dropping the snapshot the data volume was restored from",
      () => {},
      { existingVolume: { ...EXISTING, size: 10, snapshotId: "snap-0fedcba9876543210" } },
      /^wagate:dataSnapshotId: the data volume vol-0123456789abcdef0 was restored from/,
    ],
    [
      "a snapshot retention of 0",
      (c: StackConfig) => (c.values["wagate:snapshotRetention"] = "0"),
      {},
      /wagate:snapshotRetention: must be at least 1/,
    ],
  ])("%s", async (_, change, options, message) => {
    let registered = 0;
    const attempt = runProgram("dev", devWith(change), options).then((run) => {
      registered = run.resources.length;
    });
    await expect(attempt).rejects.toThrow(message);
    expect(registered).toBe(0);
  });

  it("an AMI id Debian does not publish in the region", async () => {
    const attempt = runProgram(
      "dev",
      devWith((c) => {
        c.values["wagate:amiId"] = MISSING_AMI;
      }),
    );
    await expect(attempt).rejects.toThrow(
      /^wagate:amiId: ami-0000000000000dead is not one of Debian's images/,
    );
  });
});
