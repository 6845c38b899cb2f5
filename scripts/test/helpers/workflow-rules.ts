import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { ROOT } from "./run-script.js";

// The properties the GitHub workflows must keep, as functions that list what is wrong with a parsed workflow.
// The tests run them on the real files (no problem allowed) and on deliberately broken copies (each rule must
// catch its own breakage), so a careless edit of a workflow fails CI.

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type Workflow = { [key: string]: Json };
type Obj = { [key: string]: Json };

export const WORKFLOW_DIR = join(ROOT, ".github", "workflows");

export function loadWorkflow(file: string): Workflow {
  return parse(readFileSync(join(WORKFLOW_DIR, file), "utf8")) as Workflow;
}

const isObj = (v: Json | undefined): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

export function jobs(wf: Workflow): Array<[string, Obj]> {
  const j = wf.jobs;
  return isObj(j) ? Object.entries(j).filter((e): e is [string, Obj] => isObj(e[1])) : [];
}

export function steps(job: Obj): Obj[] {
  return Array.isArray(job.steps) ? job.steps.filter(isObj) : [];
}

function uses(step: Obj): string {
  return typeof step.uses === "string" ? step.uses : "";
}

function withOf(step: Obj): Obj {
  return isObj(step.with) ? step.with : {};
}

function run(step: Obj): string {
  return typeof step.run === "string" ? step.run : "";
}

/** The trigger names (`on:` may be a string, a list or a map). */
export function triggers(wf: Workflow): string[] {
  const on = wf.on ?? (wf as Obj).true; // YAML 1.1 readers turn a bare `on` into true; `yaml` does not.
  if (typeof on === "string") return [on];
  if (Array.isArray(on)) return on.filter((t): t is string => typeof t === "string");
  return isObj(on) ? Object.keys(on) : [];
}

function permissions(scope: Obj): Obj | string | undefined {
  const p = scope.permissions;
  return isObj(p) || typeof p === "string" ? p : undefined;
}

/** GitHub's expression syntax, spelled out so it does not read as a misplaced template literal. */
const GITHUB_MATRIX_STACK = ["$", "{{ matrix.stack }}"].join("");
const PR_NUMBER = ["$", "{{ github.event.pull_request.number }}"].join("");

const PINNED = /@(v\d+\.\d+\.\d+|[0-9a-f]{40})$/;

/** Rules every workflow keeps. */
export function commonProblems(wf: Workflow): string[] {
  const problems: string[] = [];
  const top = permissions(wf);
  if (!isObj(top) || JSON.stringify(top) !== JSON.stringify({ contents: "read" })) {
    problems.push("top-level permissions must be exactly { contents: read }");
  }
  const text = JSON.stringify(wf);
  if (/aws-access-key-id|aws-secret-access-key|AWS_ACCESS_KEY_ID|AWS_SECRET_ACCESS_KEY/.test(text)) {
    problems.push("long-lived AWS keys are referenced");
  }
  if (/pull_request_target/.test(JSON.stringify(wf.on ?? null)))
    problems.push("pull_request_target runs fork code with secrets");
  for (const [name, job] of jobs(wf)) {
    const p = permissions(job);
    if (typeof p === "string") problems.push(`${name}: permissions must be a map, not ${p}`);
    for (const step of steps(job)) {
      if (uses(step) && !PINNED.test(uses(step)))
        problems.push(`${name}: ${uses(step)} is not pinned to a full version`);
      // Only a review stack, which has no committed Pulumi.<stack>.yaml, may be removed along with its resources.
      if (/--remove\b|stack rm\b/.test(run(step))) {
        const removesReviewStack =
          !/--remove\b/.test(run(step)) &&
          /stack rm "\$STACK"/.test(run(step)) &&
          isObj(wf.env) &&
          wf.env.STACK === `pr-${PR_NUMBER}`;
        if (!removesReviewStack) problems.push(`${name}: a step removes a stack (--remove / stack rm)`);
      }
      if (uses(step).startsWith("pulumi/actions@") && String(withOf(step).remove ?? "false") !== "false") {
        problems.push(`${name}: pulumi/actions with remove`);
      }
      if (uses(step).startsWith("aws-actions/configure-aws-credentials@")) {
        if (!withOf(step)["role-to-assume"]) problems.push(`${name}: AWS credentials without an OIDC role`);
        if (!isObj(p) || p["id-token"] !== "write")
          problems.push(`${name}: OIDC needs id-token: write on the job`);
      }
    }
  }
  return problems;
}

function pulumiSteps(job: Obj, command?: string): Obj[] {
  return steps(job).filter(
    (s) => uses(s).startsWith("pulumi/actions@") && (command === undefined || withOf(s).command === command),
  );
}

export function ciProblems(wf: Workflow): string[] {
  const problems: string[] = [];
  const t = triggers(wf);
  if (!t.includes("push") || !t.includes("pull_request"))
    problems.push("ci must run on push and pull_request");
  const runsTests = jobs(wf).some(([, job]) =>
    steps(job).some((s) => /^\.ci\/run$|npm ci && npm test/.test(run(s).trim())),
  );
  if (!runsTests) problems.push("ci must run .ci/run (npm ci && npm test)");
  return problems;
}

export function previewProblems(wf: Workflow, deployWf: Workflow): string[] {
  const problems: string[] = [];
  if (JSON.stringify(triggers(wf)) !== JSON.stringify(["pull_request"]))
    problems.push("preview must run on pull_request only");
  const previewJobs = jobs(wf).filter(([, job]) => pulumiSteps(job, "preview").length > 0);
  if (previewJobs.length !== 1) problems.push("exactly one job must run the pulumi preview action");
  for (const [name, job] of previewJobs) {
    for (const step of pulumiSteps(job, "preview")) {
      const w = withOf(step);
      if (w["comment-on-pr"] !== true) problems.push(`${name}: comment-on-pr must be true`);
      if (w["edit-pr-comment"] !== true)
        problems.push(`${name}: edit-pr-comment must be true (one comment per stack)`);
      if (w.policyPacks !== "infra/policy") problems.push(`${name}: the policy pack infra/policy must run`);
      if (w["stack-name"] !== GITHUB_MATRIX_STACK)
        problems.push(`${name}: one preview per affected stack (matrix.stack)`);
    }
    const p = permissions(job);
    const expected = { contents: "read", "id-token": "write", "pull-requests": "write" };
    if (JSON.stringify(p) !== JSON.stringify(expected))
      problems.push(`${name}: permissions must be ${JSON.stringify(expected)}`);
    const env = isObj(job.env) ? job.env : {};
    const deployProd =
      isObj(deployWf.jobs) && isObj(deployWf.jobs.prod) && isObj(deployWf.jobs.prod.env)
        ? deployWf.jobs.prod.env
        : {};
    const prodTypes = String(deployProd.NEVER_DESTROY ?? "");
    const expectedTypes = ["$", `{{ matrix.stack == 'prod' && '${prodTypes}' || '' }}`].join("");
    if (!prodTypes || env.NEVER_DESTROY !== expectedTypes) {
      problems.push(`${name}: prod's never-destroy types must be deploy.yml's`);
    }
    const guard = steps(job).findIndex(
      (s) => /preview-guard-cli\.ts/.test(run(s)) && /pulumi preview .*--json/.test(run(s)),
    );
    if (guard === -1) problems.push(`${name}: no protected-resource guard on pulumi preview --json`);
    else if (!/--policy-pack infra\/policy/.test(run(steps(job)[guard] as Obj)))
      problems.push(`${name}: the guarded preview must run the policy pack`);
  }
  for (const [name, job] of jobs(wf)) {
    if (
      name !== previewJobs[0]?.[0] &&
      isObj(permissions(job)) &&
      Object.values(permissions(job) as Obj).includes("write")
    ) {
      problems.push(`${name}: only the preview job may write`);
    }
  }
  return problems;
}

function concurrencyGroup(job: Obj): { group?: string; cancel?: Json } {
  const c = job.concurrency;
  if (typeof c === "string") return { group: c };
  return isObj(c)
    ? { group: typeof c.group === "string" ? c.group : undefined, cancel: c["cancel-in-progress"] }
    : {};
}

function environmentName(job: Obj): string | undefined {
  const e = job.environment;
  if (typeof e === "string") return e;
  return isObj(e) && typeof e.name === "string" ? e.name : undefined;
}

/** Every stack a job's steps operate on (pulumi/actions stack-name, `--stack x` and `teardown -- x` in runs). */
export function stacksTouched(job: Obj): string[] {
  const stacks = new Set<string>();
  for (const s of steps(job)) {
    const name = withOf(s)["stack-name"];
    if (uses(s).startsWith("pulumi/actions@") && typeof name === "string") stacks.add(name);
    for (const m of run(s).matchAll(/--stack[ =]"?([\w$.{}-]+)"?|teardown -- ([\w-]+)/g))
      stacks.add((m[1] ?? m[2]) as string);
  }
  return [...stacks];
}

export function deployProblems(wf: Workflow): string[] {
  const problems: string[] = [];
  const t = triggers(wf);
  if (JSON.stringify([...t].sort()) !== JSON.stringify(["push", "workflow_dispatch"])) {
    problems.push("deploy must run on push (main) and workflow_dispatch only");
  }
  const on = wf.on as Obj;
  if (!isObj(on?.push) || JSON.stringify(on.push.branches) !== JSON.stringify(["main"]))
    problems.push("deploy's push trigger must be main only");
  const byStack = (stack: string) => jobs(wf).filter(([, job]) => stacksTouched(job).includes(stack));
  for (const stack of ["staging", "prod"]) {
    const found = byStack(stack);
    if (found.length !== 1) {
      problems.push(`exactly one job must deploy ${stack}`);
      continue;
    }
    const [name, job] = found[0] as [string, Obj];
    if (JSON.stringify(stacksTouched(job)) !== JSON.stringify([stack]))
      problems.push(`${name}: touches another stack too`);
    const { group, cancel } = concurrencyGroup(job);
    if (group !== `pulumi-${stack}`) problems.push(`${name}: concurrency group must be pulumi-${stack}`);
    if (cancel !== false)
      problems.push(`${name}: a deploy must never be cancelled half-way (cancel-in-progress: false)`);
    if (environmentName(job) !== stack) problems.push(`${name}: must run in the ${stack} environment`);
    const all = steps(job);
    const up = all.findIndex((s) => uses(s).startsWith("pulumi/actions@") && withOf(s).command === "up");
    const smoke = all.findIndex((s) => /npm run smoke -- /.test(run(s)));
    if (up === -1) problems.push(`${name}: no pulumi up`);
    else if (withOf(all[up] as Obj).policyPacks !== "infra/policy")
      problems.push(`${name}: up must run the policy pack`);
    if (smoke === -1 || smoke < up) problems.push(`${name}: smoke must run after pulumi up`);
    const condition = typeof job.if === "string" ? job.if.replace(/\s+/g, " ") : "";
    if (!condition.includes("github.ref == 'refs/heads/main'"))
      problems.push(`${name}: only main may deploy ${stack}`);
    if (stack === "prod") {
      const guard = all.findIndex((s) => /preview-guard-cli\.ts/.test(run(s)));
      if (guard === -1 || guard > up)
        problems.push(`${name}: the protected-resource guard must run before up`);
      const needs = Array.isArray(job.needs) ? job.needs : [job.needs];
      const stagingJob = byStack("staging")[0]?.[0];
      if (!stagingJob || !needs.includes(stagingJob))
        problems.push(`${name}: prod must need the staging job (staging healthy first)`);
      const cond = typeof job.if === "string" ? job.if.replace(/\s+/g, " ") : "";
      if (
        !cond.includes("github.event_name == 'workflow_dispatch'") ||
        !cond.includes("github.ref == 'refs/heads/main'")
      ) {
        problems.push(`${name}: prod must only run on a manual dispatch from main`);
      }
    }
  }
  return problems;
}

export function teardownProblems(wf: Workflow, deploy: Workflow): string[] {
  const problems: string[] = [];
  const t = triggers(wf);
  if (!t.includes("workflow_dispatch") || !t.includes("schedule"))
    problems.push("teardown must be manual and scheduled");
  if (/prod/i.test(JSON.stringify(wf))) problems.push("teardown-staging mentions prod");
  const destroyers = jobs(wf).filter(([, job]) => stacksTouched(job).length > 0);
  if (destroyers.length === 0) problems.push("no job destroys staging");
  for (const [name, job] of destroyers) {
    if (JSON.stringify(stacksTouched(job)) !== JSON.stringify(["staging"]))
      problems.push(`${name}: touches a stack other than staging`);
    if (environmentName(job) !== "staging")
      problems.push(`${name}: must only get the staging environment's credentials`);
    const destroys = steps(job).some(
      (s) =>
        run(s).trim() === "npm run teardown -- staging --yes" ||
        (uses(s).startsWith("pulumi/actions@") &&
          withOf(s).command === "destroy" &&
          withOf(s)["stack-name"] === "staging"),
    );
    if (!destroys)
      problems.push(`${name}: must destroy staging through npm run teardown or pulumi/actions destroy`);
    const stagingDeploy = jobs(deploy).find(([, j]) => stacksTouched(j).includes("staging"));
    const group = concurrencyGroup(job).group;
    if (!stagingDeploy || group !== concurrencyGroup(stagingDeploy[1]).group) {
      problems.push(`${name}: must share staging's deploy concurrency group`);
    }
  }
  return problems;
}

/** Optional review stacks: pr-<number> only, staging's config, destroyed (and removed) when the PR closes. */
export function reviewProblems(wf: Workflow): string[] {
  const problems: string[] = [];
  const on = wf.on as Obj;
  if (JSON.stringify(triggers(wf)) !== JSON.stringify(["pull_request"]))
    problems.push("review stacks run on pull_request only");
  const types = isObj(on?.pull_request) && Array.isArray(on.pull_request.types) ? on.pull_request.types : [];
  if (!types.includes("closed")) problems.push("review stacks must react to the pull request closing");
  const stack = isObj(wf.env) ? wf.env.STACK : undefined;
  if (stack !== `pr-${PR_NUMBER}`) problems.push("the review stack must be pr-<number>");
  if (/prod/i.test(JSON.stringify(wf))) problems.push("review stacks mention prod");
  for (const [name, job] of jobs(wf)) {
    for (const s of stacksTouched(job)) {
      if (s !== "staging" && !/^\$\{\{ env\.STACK \}\}$|^\$STACK$/.test(s))
        problems.push(`${name}: touches stack ${s}`);
    }
    for (const step of steps(job)) {
      if (/stack init/.test(run(step)) && !/--copy-config-from staging\b/.test(run(step))) {
        problems.push(`${name}: a review stack must copy staging's config`);
      }
      if (/pulumi (up|destroy)\b/.test(run(step)) && /--stack staging\b/.test(run(step)))
        problems.push(`${name}: changes staging`);
    }
    const cond = typeof job.if === "string" ? job.if : "";
    const { group, cancel } = concurrencyGroup(job);
    if (group !== `pulumi-pr-${PR_NUMBER}` || cancel !== false) {
      problems.push(`${name}: one operation per review stack at a time, never cancelled`);
    }
    if (!cond.includes("'review-stack'"))
      problems.push(`${name}: only for pull requests labelled review-stack`);
  }
  const destroyer = jobs(wf).find(([, job]) =>
    steps(job).some((s) => /npm run teardown -- "\$STACK" --yes/.test(run(s))),
  );
  if (!destroyer || !String(destroyer[1].if).includes("github.event.action == 'closed'")) {
    problems.push("closing the pull request must destroy the review stack through npm run teardown");
  }
  return problems;
}
