import { readFileSync } from "node:fs";
import type * as pulumi from "@pulumi/pulumi";
import { describe, expect, it } from "vitest";
import { ConfigError, gatewayEnvOf, parseCidr, parseConfig, SECRET_KEYS } from "../config.js";
import { architectureOf, DEBIAN_AMI_OWNER, DEBIAN_RELEASE } from "../plan/ami.js";
import { readStackFile, STACKS, stackConfig, TEST_SECRETS } from "./support/stack-config.js";

const unwrap = <T>(output: pulumi.Output<T>) => new Promise<T>((resolve) => output.apply(resolve));
const isSecret = (output: pulumi.Output<unknown>) =>
  (output as unknown as { isSecret: Promise<boolean> }).isSecret;

function parse(
  stack: (typeof STACKS)[number],
  change: (c: { values: Record<string, string>; secretKeys: string[] }) => void = () => {},
) {
  const config = stackConfig(stack);
  change(config);
  return parseConfig(config.values, new Set(config.secretKeys), stack);
}

function problemsOf(run: () => unknown): string[] {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
  throw new Error("the configuration was accepted");
}

describe("the three stack files", () => {
  it.each(STACKS)("%s parses, with its secrets as Pulumi secrets", async (stack) => {
    const config = parse(stack);
    expect(config.stack).toBe(stack);
    expect(config.adminCidrs.length).toBeGreaterThan(0);
    // No backend is trusted unless the operator lists it.
    expect(config.trustedCidrs).toEqual([]);
    expect(config.amiId).toMatch(/^ami-/);
    expect(config.acmeServer).toBe(stack === "prod" ? "production" : "staging");
    expect(config.rateLimit.perIp.rate).toBeGreaterThan(0);
    expect(await isSecret(config.apiSecret)).toBe(true);
    expect(await unwrap(config.apiSecret)).toBe(TEST_SECRETS["wagate:apiSecret"]);
    expect(config.whatsapp).toBeDefined();
    expect(await isSecret(config.whatsapp?.accessToken as pulumi.Output<string>)).toBe(true);
  });

  // The id itself is checked against AWS at preview (components/host.ts: Debian's account, the release, the
  // architecture); offline, the file says which image it pins, and that is a Debian 13 image of Debian's own account
  // built for the architecture of the stack's instance type.
  it.each(STACKS)("%s pins a Debian 13 AMI of Debian's own account, named next to its id", (stack) => {
    const text = readFileSync(new URL(`../../Pulumi.${stack}.yaml`, import.meta.url), "utf8");
    const config = parse(stack);
    const pinned = new RegExp(
      `# Debian ${DEBIAN_RELEASE} \\(\\w+\\) (\\S+) from Debian's own account \\((\\d+)\\): (debian-(\\d+)-(amd64|arm64)-\\S+) in ([a-z0-9-]+)\\.\\n(?:\\s*#.*\\n)*\\s*wagate:amiId: ${config.amiId}\\n`,
    ).exec(text);
    expect(pinned, `Pulumi.${stack}.yaml: the comment above wagate:amiId`).not.toBeNull();
    const [, arch, owner, , release, nameArch, region] = pinned ?? [];
    expect(owner).toBe(DEBIAN_AMI_OWNER);
    expect(release).toBe(String(DEBIAN_RELEASE));
    expect(nameArch).toBe(arch);
    expect(nameArch).toBe(architectureOf(config.instanceType) === "arm64" ? "arm64" : "amd64");
    expect(region).toBe(config.awsRegion);
  });

  it.each(STACKS)("%s holds no secret in its file: alone it lacks only the API secret", (stack) => {
    const fromFile = readStackFile(stack);
    for (const key of SECRET_KEYS) expect(fromFile).not.toHaveProperty(`wagate:${key}`);
    expect(problemsOf(() => parseConfig(fromFile, new Set(), stack))).toEqual([
      expect.stringMatching(/^wagate:apiSecret: is required/),
    ]);
  });
});

// One table row per rule: the change to a valid dev config, and the key the error must name.
const invalid: [string, (c: { values: Record<string, string>; secretKeys: string[] }) => void, string][] = [
  ["missing domain", (c) => delete c.values["wagate:domain"], "wagate:domain:"],
  ["domain with a scheme", (c) => (c.values["wagate:domain"] = "https://api.example.com"), "wagate:domain:"],
  ["bad e-mail", (c) => (c.values["wagate:acmeEmail"] = "ops-at-example"), "wagate:acmeEmail:"],
  ["bad acmeServer", (c) => (c.values["wagate:acmeServer"] = "letsencrypt"), "wagate:acmeServer:"],
  [
    "plain-http acmeServer",
    (c) => (c.values["wagate:acmeServer"] = "http://acme.test/dir"),
    "wagate:acmeServer:",
  ],
  ["missing adminCidrs", (c) => delete c.values["wagate:adminCidrs"], "wagate:adminCidrs:"],
  ["empty adminCidrs", (c) => (c.values["wagate:adminCidrs"] = "[]"), "wagate:adminCidrs:"],
  ["bad CIDR", (c) => (c.values["wagate:adminCidrs"] = '["203.0.113.0/33"]'), "wagate:adminCidrs:"],
  ["not a CIDR", (c) => (c.values["wagate:adminCidrs"] = '["office"]'), "wagate:adminCidrs:"],
  [
    "0.0.0.0/0",
    (c) => (c.values["wagate:adminCidrs"] = '["203.0.113.0/24","0.0.0.0/0"]'),
    "wagate:adminCidrs:",
  ],
  ["::/0", (c) => (c.values["wagate:adminCidrs"] = '["::/0"]'), "wagate:adminCidrs:"],
  [
    "half the internet",
    (c) => (c.values["wagate:adminCidrs"] = '["0.0.0.0/1","128.0.0.0/1"]'),
    "wagate:adminCidrs:",
  ],
  ["host bits set", (c) => (c.values["wagate:adminCidrs"] = '["203.0.113.7/24"]'), "wagate:adminCidrs:"],
  ["adminCidrs not JSON", (c) => (c.values["wagate:adminCidrs"] = "203.0.113.0/24"), "wagate:adminCidrs:"],
  [
    "trustedCidrs not a list",
    (c) => (c.values["wagate:trustedCidrs"] = '"198.51.100.0/28"'),
    "wagate:trustedCidrs:",
  ],
  [
    "trusted bad CIDR",
    (c) => (c.values["wagate:trustedCidrs"] = '["198.51.100.0/33"]'),
    "wagate:trustedCidrs:",
  ],
  ["trusted 0.0.0.0/0", (c) => (c.values["wagate:trustedCidrs"] = '["0.0.0.0/0"]'), "wagate:trustedCidrs:"],
  ["trusted IPv6", (c) => (c.values["wagate:trustedCidrs"] = '["2001:db8::/48"]'), "wagate:trustedCidrs:"],
  ["trusted too wide", (c) => (c.values["wagate:trustedCidrs"] = '["10.0.0.0/7"]'), "wagate:trustedCidrs:"],
  [
    "trusted host bits",
    (c) => (c.values["wagate:trustedCidrs"] = '["198.51.100.5/28"]'),
    "wagate:trustedCidrs:",
  ],
  ["missing instanceType", (c) => delete c.values["wagate:instanceType"], "wagate:instanceType:"],
  ["missing amiId", (c) => delete c.values["wagate:amiId"], "wagate:amiId:"],
  ["AMI name instead of id", (c) => (c.values["wagate:amiId"] = "debian-12-arm64-20250101"), "wagate:amiId:"],
  [
    "rate limit out of range",
    (c) => (c.values["wagate:rateLimit"] = '{"perIp":{"rate":0,"burst":1}}'),
    "wagate:rateLimit:",
  ],
  [
    "unknown rate limit field",
    (c) => (c.values["wagate:rateLimit"] = '{"perIP":{"rate":1,"burst":1}}'),
    "wagate:rateLimit:",
  ],
  ["paranoia level 5", (c) => (c.values["wagate:waf"] = '{"paranoiaLevel":5}'), "wagate:waf:"],
  ["bad hosted zone", (c) => (c.values["wagate:hostedZoneId"] = "example.com"), "wagate:hostedZoneId:"],
  [
    "unpinned image tag",
    (c) => (c.values["wagate:gatewayImage"] = "ghcr.io/acme/wagate:1.2.3"),
    "wagate:gatewayImage:",
  ],
  [
    "latest image",
    (c) => (c.values["wagate:gatewayImage"] = "ghcr.io/acme/wagate:latest"),
    "wagate:gatewayImage:",
  ],
  [
    "detailedMonitoring not a boolean",
    (c) => (c.values["wagate:detailedMonitoring"] = "yes"),
    "wagate:detailedMonitoring:",
  ],
  [
    "retention of 0 days",
    (c) => (c.values["wagate:backupRetentionDays"] = "0"),
    "wagate:backupRetentionDays:",
  ],
  [
    "snapshot retention of 0",
    (c) => (c.values["wagate:snapshotRetention"] = "0"),
    "wagate:snapshotRetention:",
  ],
  [
    "snapshot retention beyond DLM's limit",
    (c) => (c.values["wagate:snapshotRetention"] = "1001"),
    "wagate:snapshotRetention:",
  ],
  [
    "fractional snapshot retention",
    (c) => (c.values["wagate:snapshotRetention"] = "1.5"),
    "wagate:snapshotRetention:",
  ],
  ["data volume of 2 GB", (c) => (c.values["wagate:dataVolumeSizeGb"] = "2"), "wagate:dataVolumeSizeGb:"],
  [
    "data volume beyond gp3",
    (c) => (c.values["wagate:dataVolumeSizeGb"] = "20000"),
    "wagate:dataVolumeSizeGb:",
  ],
  [
    "data volume size as text",
    (c) => (c.values["wagate:dataVolumeSizeGb"] = "ten"),
    "wagate:dataVolumeSizeGb:",
  ],
  [
    "snapshot copies to the stack's own region",
    (c) => (c.values["wagate:snapshotCopyRegion"] = c.values["aws:region"] as string),
    "wagate:snapshotCopyRegion: must be another region",
  ],
  [
    "snapshot copies to a non-region",
    (c) => (c.values["wagate:snapshotCopyRegion"] = "europe"),
    "wagate:snapshotCopyRegion:",
  ],
  [
    "snapshot name instead of id",
    (c) => (c.values["wagate:dataSnapshotId"] = "nightly"),
    "wagate:dataSnapshotId:",
  ],
  ["typo in a key", (c) => (c.values["wagate:hostedZoneID"] = "Z123"), "wagate:hostedZoneID:"],
  ["missing region", (c) => delete c.values["aws:region"], "aws:region:"],
  ["missing apiSecret", (c) => delete c.values["wagate:apiSecret"], "wagate:apiSecret:"],
  [
    "apiSecret in plain text",
    (c) => (c.secretKeys = c.secretKeys.filter((k) => k !== "wagate:apiSecret")),
    "wagate:apiSecret:",
  ],
  [
    "WhatsApp token in plain text",
    (c) => (c.secretKeys = c.secretKeys.filter((k) => k !== "wagate:whatsappAccessToken")),
    "wagate:whatsappAccessToken:",
  ],
  [
    "apiSecretPrevious in plain text",
    (c) => (c.values["wagate:apiSecretPrevious"] = "cd".repeat(32)),
    "wagate:apiSecretPrevious: is stored in plain text",
  ],
  [
    "apiSecretPrevious too short",
    (c) => {
      c.values["wagate:apiSecretPrevious"] = "cd".repeat(31);
      c.secretKeys.push("wagate:apiSecretPrevious");
    },
    "wagate:apiSecretPrevious: must be at least 32 bytes",
  ],
  [
    "apiSecretPrevious the same as apiSecret",
    (c) => {
      c.values["wagate:apiSecretPrevious"] = (c.values["wagate:apiSecret"] as string).toUpperCase();
      c.secretKeys.push("wagate:apiSecretPrevious");
    },
    "wagate:apiSecretPrevious: must differ",
  ],
  ["apiSecret not hex", (c) => (c.values["wagate:apiSecret"] = "z".repeat(64)), "wagate:apiSecret:"],
  ["apiSecret too short", (c) => (c.values["wagate:apiSecret"] = "ab".repeat(31)), "wagate:apiSecret:"],
  ["apiSecret odd length", (c) => (c.values["wagate:apiSecret"] = "a".repeat(65)), "wagate:apiSecret:"],
  [
    "verify token with a newline",
    (c) => (c.values["wagate:whatsappVerifyToken"] = "abcdefgh\nijklmnopq"),
    "wagate:whatsappVerifyToken:",
  ],
  [
    "WhatsApp half configured",
    (c) => delete c.values["wagate:whatsappAppSecret"],
    "wagate:whatsappAppSecret:",
  ],
  [
    "bad phone number id",
    (c) => (c.values["wagate:whatsappPhoneNumberId"] = "+49 151"),
    "wagate:whatsappPhoneNumberId:",
  ],
];

describe("invalid configurations fail naming the key", () => {
  it.each(invalid)("%s", (_, change, key) => {
    const problems = problemsOf(() => parse("dev", change));
    expect(problems.some((p) => p.startsWith(key))).toBe(true);
  });

  it("takes apiSecretPrevious for a rotation, as a secret, into the gateway's environment", async () => {
    const previous = "cd".repeat(32);
    const config = parse("dev", (c) => {
      c.values["wagate:apiSecretPrevious"] = previous;
      c.secretKeys.push("wagate:apiSecretPrevious");
    });
    expect(await isSecret(config.apiSecretPrevious as pulumi.Output<string>)).toBe(true);
    const env = gatewayEnvOf(config);
    expect(await isSecret(env)).toBe(true);
    expect((await unwrap(env)).apiSecretPrevious).toBe(previous);
    expect((await unwrap(gatewayEnvOf(parse("dev")))).apiSecretPrevious).toBeUndefined();
  });

  it("no message repeats a secret value", () => {
    const bad = `zz${"9f".repeat(40)}`;
    const problems = problemsOf(() =>
      parse("dev", (c) => {
        c.values["wagate:apiSecret"] = bad;
        c.secretKeys = [];
      }),
    );
    const text = problems.join("\n");
    expect(text).toContain("wagate:apiSecret:");
    expect(text).not.toContain(bad);
    for (const secret of Object.values(TEST_SECRETS)) expect(text).not.toContain(secret);
  });

  it("reports every bad key at once, one line each", () => {
    const problems = problemsOf(() =>
      parse("dev", (c) => {
        delete c.values["wagate:domain"];
        c.values["wagate:adminCidrs"] = '["0.0.0.0/0"]';
      }),
    );
    expect(problems.map((p) => p.split(":").slice(0, 2).join(":")).sort()).toEqual([
      "wagate:adminCidrs",
      "wagate:domain",
    ]);
    expect(problems.every((p) => !p.includes("\n"))).toBe(true);
  });
});

describe("optional settings", () => {
  it("WhatsApp may be left out entirely (sandbox transport)", () => {
    const config = parse("dev", (c) => {
      for (const k of [
        "whatsappAccessToken",
        "whatsappAppSecret",
        "whatsappVerifyToken",
        "whatsappPhoneNumberId",
      ]) {
        delete c.values[`wagate:${k}`];
      }
    });
    expect(config.whatsapp).toBeUndefined();
  });

  it("accepts a digest-pinned image, a hosted zone and a Pebble directory", () => {
    const digest = `registry.example.com:5000/wagate/gateway:1.0@sha256:${"a1".repeat(32)}`;
    const config = parse("dev", (c) => {
      c.values["wagate:gatewayImage"] = digest;
      c.values["wagate:hostedZoneId"] = "Z0123456789ABCDEFGHIJ";
      c.values["wagate:acmeServer"] = "https://127.0.0.1:14000/dir";
    });
    expect(config.gatewayImage).toBe(digest);
    expect(config.hostedZoneId).toBe("Z0123456789ABCDEFGHIJ");
    expect(config.acmeServer).toBe("https://127.0.0.1:14000/dir");
  });

  it("defaults what the stack files leave out", () => {
    const config = parse("dev", (c) => {
      delete c.values["wagate:rateLimit"];
      delete c.values["wagate:waf"];
    });
    expect(config.rateLimit.perIp).toEqual({ rate: 10, burst: 20 });
    expect(config.waf.enabled).toBe(true);
    expect(config.provision).toBe(true);
    expect(config.detailedMonitoring).toBe(false);
  });
});

describe("parseCidr", () => {
  it.each([
    ["203.0.113.0/24", { family: 4, prefix: 24 }],
    ["198.51.100.7/32", { family: 4, prefix: 32 }],
    ["2001:db8::/32", { family: 6, prefix: 32 }],
    ["::/0", { family: 6, prefix: 0 }],
  ])("%s", (text, expected) => {
    expect(parseCidr(text)).toMatchObject(expected);
  });

  it.each([
    "203.0.113.0",
    "203.0.113.0/33",
    "256.0.0.0/8",
    "01.2.3.0/24",
    "2001:db8:::/32",
    "1:2:3:4:5:6:7:8:9/64",
    "x/8",
  ])("refuses %s", (text) => {
    expect(parseCidr(text)).toBeUndefined();
  });
});
