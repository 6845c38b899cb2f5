import { describe, expect, it } from "vitest";
import { GATEWAY_STEP } from "../render/bundle.js";
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

describe("re-runs", () => {
  it("a second run with nothing changed registers identical inputs: no command runs again", async () => {
    const first = await runProgram("staging", stackConfig("staging"));
    const second = await runProgram("staging", stackConfig("staging"));
    const inputs = (run: ProgramRun) => Object.fromEntries(run.resources.map((r) => [keyOf(r), r.inputs]));
    expect(inputs(second)).toEqual(inputs(first));
  });

  it("rotating the API secret re-runs the env file and the gateway step, nothing else", async () => {
    const before = await runProgram("dev", stackConfig("dev"));
    const after = await runProgram(
      "dev",
      devWith((c) => {
        c.values["wagate:apiSecret"] = "ab".repeat(32);
      }),
    );
    const [a, b] = [triggers(before), triggers(after)];
    const changed = Object.keys(b).filter((name) => JSON.stringify(a[name]) !== JSON.stringify(b[name]));
    expect(changed).toEqual([`wagate-${GATEWAY_STEP}`]);
    const stdin = (run: ProgramRun) =>
      unwrapSecrets(run.resources.find((r) => r.name === "wagate-gateway-env")?.inputs.stdin);
    expect(stdin(after)).not.toEqual(stdin(before));
    expect(String(stdin(after))).toContain(`API_SECRET=${"ab".repeat(32)}`);
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

  it.each([
    [
      "another publisher's image",
      { name: "debian-12-arm64-20250428-2096", ownerId: "099720109477", architecture: "arm64" },
      /not published by Debian/,
    ],
    [
      "an image for another architecture",
      { name: "debian-12-amd64-20250428-2096", ownerId: "136693071363", architecture: "x86_64" },
      /needs arm64/,
    ],
  ])("an AMI that is %s", async (_, ami, problem) => {
    const attempt = runProgram("dev", stackConfig("dev"), { ami });
    await expect(attempt).rejects.toThrow(/wagate:amiId/);
    await expect(attempt).rejects.toThrow(problem);
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
