import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { type Started, startProcess } from "../../scripts/lib/processes.js";
import { type FakeEngine, startFakeEngine } from "./support/engine.js";
import { type ProgramRun, type Registered, recordingMocks } from "./support/program.js";
import { type StackConfig, stackConfig } from "./support/stack-config.js";

// `pulumi up` starts the program as a separate Node process through Pulumi's nodejs runner, with the node
// arguments of Pulumi.yaml's runtime options, the stack's config in PULUMI_CONFIG and its secret keys in
// PULUMI_CONFIG_SECRET_KEYS. This runs exactly that against a loopback stand-in for the engine.

const require = createRequire(import.meta.url);
const root = fileURLToPath(new URL("../../", import.meta.url));
const project = parse(readFileSync(`${root}Pulumi.yaml`, "utf8")) as {
  name: string;
  runtime: { name: string; options: { typescript: boolean; nodeargs: string } };
};

/** A whole program run in a second Node process (tsx transpiling every module): generous on 2 shared cores. */
const RUNNER_TIMEOUT = 120_000;

let engine: FakeEngine | undefined;
let program: Started | undefined;
afterEach(async () => {
  await program?.stop();
  engine?.close();
});

interface RunOptions {
  /**
   * Expect a failure announced on stderr: wait for this text, then stop the process. The runner is started
   * without an engine address so that it prints its errors; a failed program keeps waiting on the stand-in's
   * open channel (the real engine ends the run), so the test stops it by pid.
   */
  failsWith?: RegExp;
}

async function runAsPulumiWould(stack: string, config: StackConfig, options: RunOptions = {}) {
  const resources: Registered[] = [];
  const calls: ProgramRun["calls"] = [];
  engine = await startFakeEngine(recordingMocks(resources, calls), project.name, stack);
  const nodeArgs = project.runtime.options.nodeargs.split(/\s+/);
  program = startProcess(
    "pulumi-program",
    process.execPath,
    [
      ...nodeArgs,
      require.resolve("@pulumi/pulumi/cmd/run"),
      `--monitor=${engine.address}`,
      ...(options.failsWith ? [] : [`--engine=${engine.address}`]),
      `--project=${project.name}`,
      `--stack=${stack}`,
      `--pwd=${root}`,
      ".",
    ],
    {
      cwd: root,
      env: {
        ...process.env,
        PULUMI_NODEJS_TYPESCRIPT: String(project.runtime.options.typescript),
        PULUMI_CONFIG: JSON.stringify(config.values),
        PULUMI_CONFIG_SECRET_KEYS: JSON.stringify(config.secretKeys),
      },
    },
  );
  let stderr = "";
  const started = program;
  const announced = new Promise<void>((resolve) => {
    started.child.stderr?.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
      if (options.failsWith?.test(stderr)) resolve();
    });
  });
  const code = options.failsWith
    ? await Promise.race([announced.then(() => "announced"), started.exited])
    : await started.exited;
  return { code, stderr, resources, logs: engine.logs, outputs: engine.stackOutputs() };
}

describe("the program under Pulumi's nodejs runner", () => {
  it("Pulumi.yaml turns off ts-node and loads the ESM TypeScript through tsx", () => {
    expect(project).toMatchObject({
      name: "wagate",
      runtime: { name: "nodejs", options: { typescript: false } },
    });
    expect(project.runtime.options.nodeargs).toBe("--import tsx");
  });

  it(
    "runs infra/index.ts from package.json's main and exports the stack outputs",
    async () => {
      const run = await runAsPulumiWould("staging", stackConfig("staging"));
      expect(run.logs.filter((l) => l.severity >= 3)).toEqual([]);
      expect(run.code).toBe(0);
      expect(run.resources.map((r) => r.type)).toContain("aws:ec2/instance:Instance");
      expect(run.resources.filter((r) => r.type === "command:remote:Command").length).toBeGreaterThan(5);
      expect(run.outputs?.url).toBe("https://staging.gateway.example.com");
      expect(run.outputs?.sshUser).toBe("admin");
    },
    RUNNER_TIMEOUT,
  );

  it(
    "stops on a plain-text secret with one message naming the key, before any resource",
    async () => {
      const config = stackConfig("staging");
      config.secretKeys = config.secretKeys.filter((k) => k !== "wagate:apiSecret");
      const run = await runAsPulumiWould("staging", config, {
        failsWith: /wagate:apiSecret: is stored in plain text/,
      });
      expect(run.code).toBe("announced");
      expect(run.stderr).toMatch(/^error: .*invalid stack configuration/m);
      expect(run.stderr).not.toContain(config.values["wagate:apiSecret"]);
      expect(run.stderr).not.toMatch(/\n\s+at /);
      expect(run.resources.filter((r) => r.type.startsWith("aws:"))).toEqual([]);
    },
    RUNNER_TIMEOUT,
  );
});
