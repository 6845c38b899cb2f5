import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { destroyVerdict } from "../ops/stack-guard.js";
import { runScript } from "./helpers/run-script.js";

// A real executable named `pulumi`, first on PATH, that records each call (arguments and working directory) in
// a file: the tests see exactly what teardown would have run, and that nothing ran when it refused.

let dir: string;
let project: string;
let calls: string;

const FAKE_PULUMI = `#!/bin/sh
printf '%s | %s\\n' "$(pwd)" "$*" >> "$FAKE_PULUMI_CALLS"
case "$*" in
  *--preview-only*) echo "Previewing destroy (staging):"; echo " - aws:ec2/instance:Instance gateway delete"; exit "\${FAKE_PREVIEW_EXIT:-0}" ;;
esac
exit "\${FAKE_DESTROY_EXIT:-0}"
`;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "wagate-teardown-"));
  project = join(dir, "project");
  await mkdir(join(dir, "bin"));
  await mkdir(project);
  await writeFile(join(dir, "bin", "pulumi"), FAKE_PULUMI);
  await chmod(join(dir, "bin", "pulumi"), 0o755);
  calls = join(dir, "calls.log");
});

beforeEach(async () => {
  await rm(calls, { force: true });
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function teardown(args: string[], options: { stdin?: string; env?: Record<string, string> } = {}) {
  return runScript("teardown.ts", ["--cwd", project, ...args], {
    stdin: options.stdin,
    env: { ...process.env, PATH: `${dir}/bin:${process.env.PATH}`, FAKE_PULUMI_CALLS: calls, ...options.env },
  });
}

async function recorded(): Promise<string[]> {
  const text = await readFile(calls, "utf8").catch(() => "");
  return text.split("\n").filter(Boolean);
}

describe("teardown", () => {
  it.each(["prod", "org/wagate/prod", "production", "prod-eu", "customer-prod", "acme"])(
    "refuses %s without running pulumi at all",
    async (stack) => {
      const result = await teardown([stack, "--yes"]);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(new RegExp(`refusing to destroy stack ${stack}`));
      expect(await recorded()).toEqual([]);
    },
  );

  it("with --yes shows the destroy preview, then destroys, never with --remove", async () => {
    const result = await teardown(["staging", "--yes"]);
    expect(result.code).toBe(0);
    expect(await recorded()).toEqual([
      `${project} | destroy --preview-only --stack staging --non-interactive`,
      `${project} | destroy --yes --stack staging --non-interactive`,
    ]);
    expect(result.stdout).toMatch(/aws:ec2\/instance:Instance gateway delete/);
  });

  it("asks for the stack's name and destroys when it is typed", async () => {
    const result = await teardown(["pr-42"], { stdin: "pr-42\n" });
    expect(result.stderr).toMatch(/Type the stack name \(pr-42\)/);
    expect(result.code).toBe(0);
    expect((await recorded()).map((c) => c.split(" | ")[1])).toEqual([
      "destroy --preview-only --stack pr-42 --non-interactive",
      "destroy --yes --stack pr-42 --non-interactive",
    ]);
  });

  it.each([
    ["a wrong answer", "yes\n"],
    ["no answer (stdin closed)", ""],
  ])("aborts after the preview on %s", async (_what, stdin) => {
    const result = await teardown(["dev"], { stdin });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/aborted; nothing was destroyed/);
    expect((await recorded()).map((c) => c.split(" | ")[1])).toEqual([
      "destroy --preview-only --stack dev --non-interactive",
    ]);
  });

  it("stops when the preview fails, and reports a failed destroy", async () => {
    const preview = await teardown(["staging", "--yes"], { env: { FAKE_PREVIEW_EXIT: "255" } });
    expect(preview.code).toBe(1);
    expect(preview.stderr).toMatch(/preview of staging failed \(exit 255\); nothing was destroyed/);
    expect(await recorded()).toHaveLength(1);
    await rm(calls, { force: true });
    const destroy = await teardown(["staging", "--yes"], { env: { FAKE_DESTROY_EXIT: "1" } });
    expect(destroy.code).toBe(1);
    expect(destroy.stderr).toMatch(/pulumi destroy failed \(exit 1\)/);
  });

  it("names a missing pulumi CLI in one line", async () => {
    const result = await runScript("teardown.ts", ["staging", "--yes", "--cwd", project], {
      env: { ...process.env, PATH: "/nonexistent" },
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/the pulumi CLI is not on PATH/);
  });

  it("has --help, and bad usage is one line with exit 2", async () => {
    const help = await teardown(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: npm run teardown/);
    for (const args of [["--force", "staging"], [], ["dev", "staging"]]) {
      const bad = await teardown(args);
      expect(bad.code, args.join(" ")).toBe(2);
      expect(bad.stderr.trim().split("\n")).toHaveLength(1);
    }
    expect(await recorded()).toEqual([]);
  });
});

describe("the stack guard", () => {
  it("allows exactly the stacks the program treats as disposable", () => {
    for (const stack of ["dev", "staging", "pr-7", "org/wagate/staging"])
      expect(destroyVerdict(stack).allowed, stack).toBe(true);
    for (const stack of ["prod", "PROD", "pr-x", "staging2", "", "../staging", "staging;rm"]) {
      expect(destroyVerdict(stack).allowed, stack).toBe(false);
    }
  });
});
