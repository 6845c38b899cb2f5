import { execFile } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { requireBinary } from "../lib/processes.js";
import { ROOT } from "./helpers/run-script.js";
import {
  ciProblems,
  commonProblems,
  deployProblems,
  type Json,
  jobs,
  loadWorkflow,
  previewProblems,
  reviewProblems,
  steps,
  teardownProblems,
  WORKFLOW_DIR,
  type Workflow,
} from "./helpers/workflow-rules.js";

const FILES = ["ci.yml", "deploy.yml", "preview.yml", "review-stack.yml", "teardown-staging.yml"];

function copy(wf: Workflow): Workflow {
  return structuredClone(wf);
}

type Obj = { [key: string]: Json };

function job(wf: Workflow, name: string): Obj {
  const found = jobs(wf).find(([n]) => n === name);
  if (!found) throw new Error(`no job ${name}`);
  return found[1];
}

function step(wf: Workflow, jobName: string, match: (s: Obj) => boolean): Obj {
  const found = steps(job(wf, jobName)).find(match);
  if (!found) throw new Error(`no such step in ${jobName}`);
  return found;
}

const pulumiStep = (command: string) => (s: Obj) =>
  String(s.uses ?? "").startsWith("pulumi/actions@") && (s.with as Obj | undefined)?.command === command;

describe("the workflows as committed", () => {
  it("are exactly the expected files, all valid YAML", () => {
    expect(readdirSync(WORKFLOW_DIR).sort()).toEqual(FILES);
    for (const file of FILES) expect(loadWorkflow(file).jobs, file).toBeTypeOf("object");
  });

  it.each(FILES)(
    "%s keeps the common rules (pinned actions, least privilege, OIDC only, no --remove)",
    (file) => {
      expect(commonProblems(loadWorkflow(file))).toEqual([]);
    },
  );

  it("every run: block passes shellcheck (GitHub expressions stand in as a plain word)", async () => {
    await requireBinary("shellcheck", "shellcheck");
    const dir = await mkdtemp(join(tmpdir(), "wagate-workflow-sh-"));
    const findings: string[] = [];
    try {
      let n = 0;
      for (const file of FILES) {
        for (const [name, j] of jobs(loadWorkflow(file))) {
          for (const s of steps(j)) {
            if (typeof s.run !== "string") continue;
            const path = join(dir, `${file}-${name}-${n++}.sh`);
            // GitHub runs `run:` with `bash -e {0}`.
            await writeFile(path, `#!/bin/bash\nset -e\n${s.run.replace(/\$\{\{[^}]*\}\}/g, "EXPR")}`);
            await promisify(execFile)("shellcheck", [path]).catch((e: { stdout?: string }) => {
              findings.push(e.stdout ?? String(e));
            });
          }
        }
      }
      expect(n).toBeGreaterThan(10);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    expect(findings).toEqual([]);
  });

  it("ci runs the README's test command on every push and pull request", () => {
    expect(ciProblems(loadWorkflow("ci.yml"))).toEqual([]);
    expect(readFileSync(join(ROOT, ".ci/run"), "utf8")).toMatch(/\nnpm ci && npm test\n?$/);
    expect(readFileSync(join(ROOT, "README.md"), "utf8")).toContain("npm ci && npm test");
  });

  it("preview comments one edited preview per affected stack, with the policy pack and the guard", () => {
    expect(previewProblems(loadWorkflow("preview.yml"), loadWorkflow("deploy.yml"))).toEqual([]);
  });

  it("deploy sends staging on merge, prod only by an approved manual run after staging, one deploy per stack", () => {
    expect(deployProblems(loadWorkflow("deploy.yml"))).toEqual([]);
  });

  it("teardown-staging destroys staging only, manually and on a schedule, keeping its config", () => {
    expect(teardownProblems(loadWorkflow("teardown-staging.yml"), loadWorkflow("deploy.yml"))).toEqual([]);
  });
});

describe("review stacks (optional)", () => {
  it("deploy pr-<number> from staging's config and destroy it when the pull request closes", () => {
    expect(reviewProblems(loadWorkflow("review-stack.yml"))).toEqual([]);
  });

  it("fail when pointed at another stack, when they stop copying staging's config, or outlive the pull request", () => {
    const wf = copy(loadWorkflow("review-stack.yml"));
    const create = step(wf, "deploy", (s) => /stack init/.test(String(s.run ?? "")));
    create.run = String(create.run).replace("--copy-config-from staging", "--copy-config-from prod");
    const destroy = step(wf, "destroy", (s) => /teardown/.test(String(s.run ?? "")));
    destroy.run = 'pulumi stack rm "$STACK" --yes';
    expect(reviewProblems(wf)).toEqual([
      "review stacks mention prod",
      "deploy: a review stack must copy staging's config",
      "closing the pull request must destroy the review stack through npm run teardown",
    ]);
    (wf.env as Obj).STACK = "staging";
    expect(commonProblems(wf)).toEqual(["destroy: a step removes a stack (--remove / stack rm)"]);
  });
});

describe("a careless edit fails", () => {
  it("an action pinned to a moving tag, or long-lived AWS keys", () => {
    const wf = copy(loadWorkflow("deploy.yml"));
    (steps(job(wf, "staging"))[0] as Obj).uses = "actions/checkout@v4";
    step(wf, "staging", (s) => String(s.uses).startsWith("aws-actions/")).with = {
      "aws-access-key-id": "secrets.AWS_ACCESS_KEY_ID",
      "aws-region": "us-east-2",
    };
    expect(commonProblems(wf)).toEqual([
      "long-lived AWS keys are referenced",
      "staging: actions/checkout@v4 is not pinned to a full version",
      "staging: AWS credentials without an OIDC role",
    ]);
  });

  it("write-all permissions, or OIDC without id-token", () => {
    const wf = copy(loadWorkflow("teardown-staging.yml"));
    wf.permissions = "write-all";
    job(wf, "teardown").permissions = { contents: "read" };
    expect(commonProblems(wf)).toEqual([
      "top-level permissions must be exactly { contents: read }",
      "teardown: OIDC needs id-token: write on the job",
    ]);
  });

  it("a preview that posts a new comment per push, skips the policy pack, or loses its guard", () => {
    const wf = copy(loadWorkflow("preview.yml"));
    const preview = step(wf, "preview", pulumiStep("preview"));
    (preview.with as Obj)["edit-pr-comment"] = false;
    delete (preview.with as Obj).policyPacks;
    job(wf, "preview").steps = steps(job(wf, "preview")).filter(
      (s) => !/preview-guard/.test(String(s.run ?? "")),
    );
    job(wf, "stacks").permissions = { contents: "write" };
    expect(previewProblems(wf, loadWorkflow("deploy.yml"))).toEqual([
      "preview: edit-pr-comment must be true (one comment per stack)",
      "preview: the policy pack infra/policy must run",
      "preview: no protected-resource guard on pulumi preview --json",
      "stacks: only the preview job may write",
    ]);
  });

  it("a preview whose prod guard drifts from deploy's never-destroy list", () => {
    const wf = copy(loadWorkflow("preview.yml"));
    (job(wf, "preview").env as Obj).NEVER_DESTROY = "";
    expect(previewProblems(wf, loadWorkflow("deploy.yml"))).toEqual([
      "preview: prod's never-destroy types must be deploy.yml's",
    ]);
  });

  it("prod deployed on merge, without staging first, or in parallel with itself", () => {
    const wf = copy(loadWorkflow("deploy.yml"));
    const prod = job(wf, "prod");
    prod.if = "github.ref == 'refs/heads/main'";
    delete prod.needs;
    prod.concurrency = { group: "deploy", "cancel-in-progress": true };
    expect(deployProblems(wf)).toEqual([
      "prod: concurrency group must be pulumi-prod",
      "prod: a deploy must never be cancelled half-way (cancel-in-progress: false)",
      "prod: prod must need the staging job (staging healthy first)",
      "prod: prod must only run on a manual dispatch from main",
    ]);
  });

  it("prod outside its approved environment, or smoke before up", () => {
    const wf = copy(loadWorkflow("deploy.yml"));
    delete job(wf, "prod").environment;
    delete job(wf, "staging").if;
    const all = job(wf, "staging").steps as Obj[];
    const smoke = all.findIndex((s) => /npm run smoke/.test(String(s.run ?? "")));
    const up = all.findIndex(pulumiStep("up"));
    [all[smoke], all[up]] = [all[up] as Obj, all[smoke] as Obj];
    expect(deployProblems(wf)).toEqual([
      "staging: smoke must run after pulumi up",
      "staging: only main may deploy staging",
      "prod: must run in the prod environment",
    ]);
  });

  it("a teardown pointed at prod, or with --remove", () => {
    const wf = copy(loadWorkflow("teardown-staging.yml"));
    const destroy = step(wf, "teardown", (s) => /teardown/.test(String(s.run ?? "")));
    destroy.run = "npm run teardown -- prod --yes";
    expect(teardownProblems(wf, loadWorkflow("deploy.yml"))).toEqual([
      "teardown-staging mentions prod",
      "teardown: touches a stack other than staging",
      "teardown: must destroy staging through npm run teardown or pulumi/actions destroy",
    ]);
    destroy.run = "pulumi destroy --yes --remove --stack staging";
    expect(commonProblems(wf)).toEqual(["teardown: a step removes a stack (--remove / stack rm)"]);
  });

  it("a teardown that can overlap a staging deploy, or is only manual", () => {
    const wf = copy(loadWorkflow("teardown-staging.yml"));
    job(wf, "teardown").concurrency = "teardown";
    delete (wf.on as Obj).schedule;
    expect(teardownProblems(wf, loadWorkflow("deploy.yml"))).toEqual([
      "teardown must be manual and scheduled",
      "teardown: must share staging's deploy concurrency group",
    ]);
  });
});
