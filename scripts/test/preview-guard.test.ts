import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { affectedStacks, stacksFromFiles } from "../ops/affected-stacks.js";
import { checkPreview, checkPreviewFile, parsePreview } from "../ops/preview-guard.js";
import { ROOT, runScript } from "./helpers/run-script.js";

// Sample `pulumi preview --json` documents (Pulumi's PreviewDigest: steps with op, urn, oldState/newState carrying
// `protect`, diagnostics, changeSummary), trimmed to the fields the guard reads plus some it must ignore.

const fixture = (name: string) => join(ROOT, "scripts", "test", "fixtures", name);
const URN = "urn:pulumi:prod::wagate::";

describe("the preview guard", () => {
  it("lets a preview through that only replaces unprotected resources", async () => {
    const report = await checkPreviewFile(fixture("preview-safe.json"));
    expect(report).toEqual({
      violations: [],
      errors: [],
      changeSummary: { same: 1, update: 1, replace: 1, create: 1 },
    });
  });

  it("names every protected resource that would be replaced or unprotected, and a never-destroy type deleted", async () => {
    const report = await checkPreviewFile(fixture("preview-protected-loss.json"), ["aws:s3/bucket:Bucket"]);
    expect(report.violations).toEqual([
      { urn: `${URN}aws:ec2/instance:Instance::gateway`, op: "replace", why: "the resource is protected" },
      {
        urn: `${URN}aws:ec2/instance:Instance::gateway`,
        op: "create-replacement",
        why: "the resource is protected",
      },
      {
        urn: `${URN}aws:ec2/instance:Instance::gateway`,
        op: "delete-replaced",
        why: "the resource is protected",
      },
      {
        urn: `${URN}aws:ec2/eip:Eip::public`,
        op: "update",
        why: "the change removes the resource's protection",
      },
      {
        urn: `${URN}aws:s3/bucket:Bucket::backups`,
        op: "delete",
        why: "aws:s3/bucket:Bucket must never be destroyed on this stack",
      },
    ]);
    const withoutTypes = await checkPreviewFile(fixture("preview-protected-loss.json"));
    expect(withoutTypes.violations.map((v) => v.op)).toEqual([
      "replace",
      "create-replacement",
      "delete-replaced",
      "update",
    ]);
  });

  it("reads the type from the URN when a step carries no state, including component-parented types", () => {
    const report = checkPreview(
      parsePreview(
        JSON.stringify({
          steps: [{ op: "delete", urn: "urn:pulumi:prod::wagate::wagate:host$aws:ec2/eip:Eip::public" }],
        }),
      ),
      ["aws:ec2/eip:Eip"],
    );
    expect(report.violations).toHaveLength(1);
  });

  it("fails on the preview's own errors (a mandatory policy), not on warnings", async () => {
    const report = await checkPreviewFile(fixture("preview-failed.json"));
    expect(report.errors).toEqual([
      "error: preview failed",
      `${URN}aws:ec2/instance:Instance::gateway: [mandatory]  wagate v0.1.0  imdsv2-required (aws:ec2/instance:Instance: gateway)\nIMDSv2 must be required`,
    ]);
  });

  it("refuses output that is not a preview digest", () => {
    expect(() => parsePreview("")).toThrow(/not JSON/);
    expect(() => parsePreview('{"steps": [{"op": 1}]}')).toThrow(/not a Pulumi preview digest/);
  });

  it("as a command: exit 1 with GitHub error annotations, exit 0 with a one-line summary", async () => {
    const bad = await runScript("ops/preview-guard-cli.ts", [
      "--stack",
      "prod",
      fixture("preview-protected-loss.json"),
    ]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(
      /^::error title=Protected resource \(prod\)::replace urn:pulumi:prod::wagate::aws:ec2\/instance:Instance::gateway: the resource is protected$/m,
    );
    expect(bad.stderr).toMatch(/REFUSED: 4 protected resource\(s\) would be lost, 0 preview error\(s\)/);
    const good = await runScript("ops/preview-guard-cli.ts", [
      "--stack",
      "staging",
      fixture("preview-safe.json"),
    ]);
    expect(good.code).toBe(0);
    expect(good.stdout).toMatch(
      /^preview-guard: staging: no protected resource .*\(same 1, update 1, replace 1, create 1\)\n$/,
    );
    const usage = await runScript("ops/preview-guard-cli.ts", [fixture("preview-safe.json")]);
    expect(usage.code).toBe(2);
  });
});

describe("affected stacks", () => {
  const stacks = ["dev", "prod", "staging"];

  it("maps a stack's own config file to that stack only", () => {
    expect(affectedStacks(["Pulumi.staging.yaml", "README.md"], stacks)).toEqual(["staging"]);
    expect(affectedStacks(["Pulumi.prod.yaml", "Pulumi.dev.yaml"], stacks)).toEqual(["dev", "prod"]);
  });

  it("maps the program, the gateway, the policy pack and the dependencies to every stack", () => {
    for (const path of [
      "infra/index.ts",
      "infra/policy/rules.ts",
      "gateway/src/app.ts",
      "Pulumi.yaml",
      "package-lock.json",
    ]) {
      expect(affectedStacks(["README.md", path], stacks), path).toEqual(stacks);
    }
  });

  it("maps documentation, operator scripts and unknown stacks to none", () => {
    expect(
      affectedStacks(
        ["README.md", "scripts/smoke.ts", ".github/workflows/ci.yml", "Pulumi.pr-9.yaml"],
        stacks,
      ),
    ).toEqual([]);
  });

  it("finds the project's stacks from the committed Pulumi.<stack>.yaml files", () => {
    expect(
      stacksFromFiles([
        "Pulumi.yaml",
        "Pulumi.staging.yaml",
        "Pulumi.dev.yaml",
        "Pulumi.prod.yaml",
        "package.json",
      ]),
    ).toEqual(stacks);
  });

  it("as a command: reads git diff --name-only on stdin, prints a JSON matrix", async () => {
    const result = await runScript("ops/affected-stacks-cli.ts", [], {
      stdin: "Pulumi.prod.yaml\ndocs/x.md\n",
    });
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual(["prod"]);
    const bad = await runScript("ops/affected-stacks-cli.ts", ["--base", "main"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/unknown option --base/);
  });
});
