import { execFileSync } from "node:child_process";
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseConfig } from "../config.js";
import { amiProblem, architectureOf, DEBIAN_AMI_OWNER } from "../plan/ami.js";
import { buildContextDigest, listBuildContext, stageBuildContext } from "../plan/build-context.js";
import { instancePolicy } from "../plan/iam.js";
import { backupBucketName } from "../plan/names.js";
import { securityGroupRules } from "../plan/network.js";
import { protectionFor } from "../plan/protection.js";
import {
  asRoot,
  digestOf,
  type ProvisionPlan,
  planProvision,
  pruneCommand,
  REMOTE_STAGE_DIR,
  readyCommand,
  remoteActions,
  secretFileCommand,
} from "../plan/provision.js";
import {
  EDGE_IDENTITY_KEY_FILE,
  EDGE_STEP,
  GATEWAY_ENV_FILE,
  GATEWAY_STEP,
  type HostBundle,
  type HostBundleInput,
  renderHostBundle,
} from "../render/bundle.js";
import { stackConfig } from "./support/stack-config.js";

const scratch = mkdtempSync(join(tmpdir(), "wagate-plan-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function bundleInput(stack: "dev" | "prod" = "dev"): HostBundleInput {
  const { values, secretKeys } = stackConfig(stack);
  const c = parseConfig(values, new Set(secretKeys), stack);
  return {
    stack,
    domain: c.domain,
    acmeEmail: c.acmeEmail,
    acmeServer: c.acmeServer,
    rateLimit: c.rateLimit,
    waf: c.waf,
    backupBucket: backupBucketName(stack, "123456789012", c.awsRegion),
    awsRegion: c.awsRegion,
  };
}

const triggersOf = (plan: ProvisionPlan) => Object.fromEntries(plan.steps.map((s) => [s.name, s.trigger]));
const changedSteps = (a: ProvisionPlan, b: ProvisionPlan) => {
  const before = triggersOf(a);
  return b.steps.filter((s) => before[s.name] !== s.trigger).map((s) => s.name);
};

describe("provisioning triggers", () => {
  const bundle = renderHostBundle(bundleInput());
  const base = planProvision(bundle);

  it("are identical on a second render of the same config: nothing runs again", () => {
    expect(planProvision(renderHostBundle(bundleInput()))).toEqual(base);
  });

  it.each(Object.keys(bundle.files))("change for exactly the steps that use %s", (path) => {
    const edited: HostBundle = {
      ...bundle,
      files: { ...bundle.files, [path]: `${bundle.files[path]}\n# edited\n` },
    };
    const expected = bundle.steps.filter((s) => s.uses.includes(path)).map((s) => s.name);
    expect(expected.length).toBeGreaterThan(0);
    expect(changedSteps(base, planProvision(edited))).toEqual(expected);
  });

  it("follow a real config change only into the steps that use the files it changed", () => {
    const input = bundleInput();
    const tighter = renderHostBundle({
      ...input,
      rateLimit: { ...input.rateLimit, perIp: { rate: 5, burst: 10 } },
    });
    const changedFiles = Object.keys(tighter.files).filter((f) => tighter.files[f] !== bundle.files[f]);
    expect(changedFiles.length).toBeGreaterThan(0);
    const expected = bundle.steps
      .filter((s) => s.uses.some((u) => changedFiles.includes(u)))
      .map((s) => s.name);
    expect(changedSteps(base, planProvision(tighter))).toEqual(expected);
    expect(expected).not.toContain("packages");
  });

  it("refuse a step that uses something the bundle does not hold", () => {
    const broken: HostBundle = { ...bundle, steps: [{ name: "x", command: "true", uses: ["missing.conf"] }] };
    expect(() => planProvision(broken)).toThrow(/step x uses missing\.conf/);
  });

  it("refuse paths that climb out of the bundle and names that collide", () => {
    expect(() => planProvision({ ...bundle, files: { "../etc/passwd": "x" } })).toThrow(/must be relative/);
    expect(() => planProvision({ ...bundle, files: { "a/b.conf": "x", "a-b.conf": "y" } })).toThrow(
      /same resource name/,
    );
  });

  it("copy each file to its path under the bundle directory, whose directories are made first", () => {
    for (const copy of base.copies) {
      expect(copy.remotePath).toBe(`${bundle.remoteDir}/${copy.path}`);
      expect(base.directories).toContain(copy.remotePath.slice(0, copy.remotePath.lastIndexOf("/")));
    }
    const ready = readyCommand(base.directories, "admin");
    for (const dir of base.directories) expect(ready).toContain(`'${dir}'`);
    expect(ready).toContain("-o 'admin'");
  });
});

describe("the remote sequence both executors follow", () => {
  const plan = planProvision(renderHostBundle(bundleInput()));
  const context = { localDir: ".local/pulumi/dev/src-0123456789abcdef", digest: "d".repeat(64) };
  const actions = remoteActions(plan, "admin", context);
  const ids = actions.map((a) => a.id);

  it("waits for the host first, then copies, env file and build context, then the steps in order", () => {
    expect(actions[0]).toMatchObject({ id: "ready", kind: "run", waitForHost: true, after: [] });
    const steps = plan.steps.map((s) => s.resourceSuffix);
    expect(ids.slice(-steps.length)).toEqual(steps);
    const setup = ids.slice(1, -steps.length);
    expect(setup).toEqual([
      ...plan.copies.map((c) => `file-${c.resourceSuffix}`),
      "bundle-prune",
      "gateway-env",
      "edge-identity-key",
      "build-context",
      "build-context-install",
    ]);
    expect(actions.find((a) => a.id === steps[0])?.after).toEqual(setup);
    steps.slice(1).forEach((id, i) => {
      expect(actions.find((a) => a.id === id)?.after).toEqual([steps[i]]);
    });
  });

  it("only ever waits on earlier actions", () => {
    actions.forEach((a, i) => {
      for (const dep of a.after) expect(ids.indexOf(dep)).toBeLessThan(i);
    });
  });

  it("feeds each secret on stdin to one command writing its file, and re-runs the step that reads it when it changes", () => {
    const fed = actions.flatMap((a) => (a.kind === "run" && a.stdin ? [[a.id, a.stdin, a.command]] : []));
    expect(fed).toEqual([
      ["gateway-env", "gatewayEnv", secretFileCommand(GATEWAY_ENV_FILE)],
      ["edge-identity-key", "edgeIdentityKey", secretFileCommand(EDGE_IDENTITY_KEY_FILE)],
    ]);
    const gateway = actions.find((a) => a.id === GATEWAY_STEP);
    expect(gateway).toMatchObject({ secretTriggers: "gatewayEnv" });
    expect(gateway?.triggers).toContain(context.digest);
    expect(actions.find((a) => a.id === EDGE_STEP)).toMatchObject({ secretTriggers: "edgeIdentityKey" });
    expect(actions.filter((a) => a.kind === "run" && a.secretTriggers).map((a) => a.id)).toEqual([
      EDGE_STEP,
      GATEWAY_STEP,
    ]);
  });

  it("stages the build context under the SSH user's directory made by the first command", () => {
    expect(actions.find((a) => a.id === "build-context")).toMatchObject({
      kind: "upload",
      remoteParent: REMOTE_STAGE_DIR,
    });
    expect(actions[0]?.kind === "run" && actions[0].command).toContain(`'${REMOTE_STAGE_DIR}'`);
    expect(remoteActions(plan, "admin").map((a) => a.id)).not.toContain("build-context");
  });
});

describe("digestOf", () => {
  it("ignores order and keeps path and content apart", () => {
    expect(digestOf({ a: "1", b: "2" })).toBe(digestOf({ b: "2", a: "1" }));
    expect(digestOf({ a: "bc" })).not.toBe(digestOf({ ab: "c" }));
    expect(digestOf({ a: "1" })).not.toBe(digestOf({ a: "1", b: "" }));
  });
});

describe("remote commands, run for real with a sudo that only drops its -n", () => {
  const bin = join(scratch, "bin");
  mkdirSync(bin);
  writeFileSync(join(bin, "sudo"), '#!/bin/sh\n[ "$1" = -n ] && shift\nexec "$@"\n');
  chmodSync(join(bin, "sudo"), 0o755);
  const sh = (command: string, stdin = "") =>
    execFileSync("sh", ["-c", command], {
      input: stdin,
      env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
    }).toString();

  it("asRoot runs the step from the bundle directory whatever quotes it holds", () => {
    const dir = join(scratch, "bundle dir's");
    mkdirSync(dir);
    expect(sh(asRoot(`printf '%s|%s' "it's \\"quoted\\"" "$(pwd)"`, dir))).toBe(`it's "quoted"|${dir}`);
  });

  it("asRoot stops at the first failing command", () => {
    expect(() => sh(asRoot("false; echo reached", scratch))).toThrow();
  });

  it("pruneCommand removes files the bundle dropped and keeps the others", () => {
    const dir = join(scratch, "bundle-prune");
    for (const f of ["keep.sh", "nginx/keep.conf", "nginx/old.conf", "gone/x.conf", "it's odd.txt"]) {
      mkdirSync(join(dir, f, ".."), { recursive: true });
      writeFileSync(join(dir, f), "x");
    }
    const command = pruneCommand(dir, ["keep.sh", "nginx/keep.conf", "it's odd.txt"]);
    sh(command);
    expect(readdirSync(dir).sort()).toEqual(["it's odd.txt", "keep.sh", "nginx"]);
    expect(readdirSync(join(dir, "nginx"))).toEqual(["keep.conf"]);
    sh(command);
    expect(readdirSync(join(dir, "nginx"))).toEqual(["keep.conf"]);
  });

  it("secretFileCommand writes stdin to a 0600 file and keeps the secret off the command line", () => {
    const dir = join(scratch, "etc-wagate");
    mkdirSync(dir, { mode: 0o755 });
    const envFile = join(dir, "gateway.env");
    const secret = "API_SECRET=0123456789abcdef\n";
    const command = secretFileCommand(envFile);
    sh(command, secret);
    expect(readFileSync(envFile, "utf8")).toBe(secret);
    expect(statSync(envFile).mode & 0o777).toBe(0o600);
    expect(statSync(dir).mode & 0o777).toBe(0o755);
    expect(command).not.toContain("0123456789abcdef");
    sh(command, "API_SECRET=rotated\n");
    expect(readFileSync(envFile, "utf8")).toBe("API_SECRET=rotated\n");
    expect(readdirSync(dir)).toEqual(["gateway.env"]);
  });
});

describe("protectionFor", () => {
  it.each([
    ["dev", "data", false, false],
    ["staging", "data", false, false],
    ["pr-42", "data", false, false],
    ["prod", "data", true, true],
    ["prod", "identity", true, false],
    ["prod-eu", "data", true, true],
    ["prod", "nothing", false, false],
  ] as const)("%s / %s: protect %s, retain %s", (stack, holds, protect, retain) => {
    const p = protectionFor(stack, holds);
    expect(p.protect).toBe(protect);
    expect(p.retainOnDelete).toBe(retain);
    expect(p.forceDestroyBucket).toBe(!protect);
  });
});

describe("securityGroupRules", () => {
  it("refuses an empty admin list", () => {
    expect(() => securityGroupRules([])).toThrow();
  });

  it("opens SSH to each admin range and nothing else to the world but 80/443, and lets out HTTP(S) and NTP only", () => {
    const rules = securityGroupRules(["203.0.113.0/24", "198.51.100.7/32"]);
    const ssh = rules.ingress.filter((r) => r.fromPort === 22);
    expect(ssh).toEqual([expect.objectContaining({ cidrBlocks: ["203.0.113.0/24", "198.51.100.7/32"] })]);
    const open = (r: { protocol: string; fromPort: number; toPort: number }) =>
      `${r.protocol}/${r.fromPort}-${r.toPort}`;
    expect(rules.ingress.filter((r) => r.cidrBlocks.includes("0.0.0.0/0")).map(open)).toEqual([
      "tcp/80-80",
      "tcp/443-443",
    ]);
    expect(rules.egress.map(open)).toEqual(["tcp/80-80", "tcp/443-443", "udp/123-123"]);
  });
});

describe("instancePolicy", () => {
  const doc = instancePolicy({
    bucketArn: "arn:aws:s3:::b",
    backupPrefix: "prod",
  });
  it("names no wildcard action and no wildcard resource", () => {
    for (const s of doc.Statement) {
      for (const a of s.Action) expect(a).not.toContain("*");
      for (const r of s.Resource) expect(r).not.toBe("*");
    }
    expect(doc.Statement.flatMap((s) => s.Resource)).toContain("arn:aws:s3:::b/prod/*");
  });
  it("grants nothing on CloudWatch Logs (no log group exists for it)", () => {
    expect(doc.Statement.flatMap((s) => s.Action).filter((a) => a.startsWith("logs:"))).toEqual([]);
  });
  it("refuses wildcard ARNs and odd prefixes", () => {
    expect(() => instancePolicy({ bucketArn: "arn:aws:s3:::*", backupPrefix: "p" })).toThrow();
    expect(() => instancePolicy({ bucketArn: "arn:aws:s3:::b", backupPrefix: "a/../b" })).toThrow();
  });
});

describe("AMI checks", () => {
  it.each([
    ["t4g.small", "arm64"],
    ["m7gd.large", "arm64"],
    ["c7gn.xlarge", "arm64"],
    ["t3.small", "x86_64"],
    ["m7i-flex.large", "x86_64"],
    ["g4dn.xlarge", "x86_64"],
  ])("%s is %s", (type, arch) => {
    expect(architectureOf(type)).toBe(arch);
  });

  const debian = {
    imageId: "ami-1",
    name: "debian-13-arm64-20250814-2204",
    ownerId: DEBIAN_AMI_OWNER,
    architecture: "arm64",
  };
  it.each([
    ["Debian 13 arm64 on t4g", debian, "t4g.small", undefined],
    [
      "Debian 13 amd64 on t3",
      { ...debian, name: "debian-13-amd64-20250814-2204", architecture: "x86_64" },
      "t3.small",
      undefined,
    ],
    ["another owner", { ...debian, ownerId: "099720109477" }, "t4g.small", /not published by Debian/],
    [
      "Debian 12",
      { ...debian, name: "debian-12-arm64-20250428-2096" },
      "t4g.small",
      /\(Debian 12\); this stack runs Debian 13/,
    ],
    ["Debian 11", { ...debian, name: "debian-11-arm64-20240101-1" }, "t4g.small", /\(Debian 11\)/],
    ["Debian 14", { ...debian, name: "debian-14-arm64-20270101-1" }, "t4g.small", /\(Debian 14\)/],
    [
      "a Debian-owned image that is no release image",
      { ...debian, name: "debian-sid-arm64-daily-20251201-1" },
      "t4g.small",
      /not a Debian release image/,
    ],
    ["arm64 image on t3", debian, "t3.small", /needs x86_64/],
  ])("%s", (_, ami, type, problem) => {
    const found = amiProblem(ami, type);
    if (problem === undefined) expect(found).toBeUndefined();
    else expect(found).toMatch(problem);
  });
});

describe("backupBucketName", () => {
  it("is a valid, account- and region-unique S3 name", () => {
    expect(backupBucketName("prod", "123456789012", "us-east-2")).toBe(
      "wagate-prod-backups-123456789012-us-east-2",
    );
    expect(backupBucketName("Feature_X", "123456789012", "eu-west-1")).toMatch(/^wagate-feature-x-backups-/);
  });
  it("refuses what S3 would", () => {
    expect(() => backupBucketName("a".repeat(40), "123456789012", "us-east-2")).toThrow(/longer than 63/);
    expect(() => backupBucketName("dev", "1234", "us-east-2")).toThrow(/12 digits/);
  });
});

describe("gateway build context", () => {
  const repo = join(scratch, "repo");
  const write = (path: string, content: string) => {
    mkdirSync(join(repo, path, ".."), { recursive: true });
    writeFileSync(join(repo, path), content);
  };
  write("package.json", "{}");
  write("package-lock.json", "{}");
  write("tsconfig.json", "{}");
  write("gateway/package.json", "{}");
  write("gateway/Dockerfile", "FROM scratch\n");
  write("gateway/src/main.ts", "export {};\n");
  write("gateway/node_modules/x/index.js", "");
  write("gateway/test/main.test.ts", "");
  write("gateway/dist/main.js", "");
  write("gateway/data/wagate.db", "");
  write("scripts/local.ts", "");

  it("holds the gateway sources and the root manifests, not dependencies, builds, tests or data", () => {
    expect(listBuildContext(repo)).toEqual([
      "gateway/Dockerfile",
      "gateway/package.json",
      "gateway/src/main.ts",
      "package-lock.json",
      "package.json",
      "tsconfig.json",
    ]);
  });

  it("changes its digest with a source file, not with a test", () => {
    const files = listBuildContext(repo);
    const before = buildContextDigest(repo, files);
    write("gateway/test/main.test.ts", "changed");
    expect(buildContextDigest(repo, listBuildContext(repo))).toBe(before);
    write("gateway/src/main.ts", "export const changed = 1;\n");
    expect(buildContextDigest(repo, listBuildContext(repo))).not.toBe(before);
  });

  it("stages into a directory named by the digest and drops older stages", () => {
    const stage = join(scratch, "stage");
    const files = listBuildContext(repo);
    const first = stageBuildContext(repo, files, stage, "a".repeat(64));
    const second = stageBuildContext(repo, files, stage, "b".repeat(64));
    expect(readdirSync(stage)).toEqual([second.name]);
    expect(first.name).not.toBe(second.name);
    expect(readFileSync(join(second.dir, "gateway/src/main.ts"), "utf8")).toContain("changed");
  });
});
