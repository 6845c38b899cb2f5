import { readFile } from "node:fs/promises";
import { z } from "zod";

// Reads the JSON of `pulumi preview --json` (Pulumi's PreviewDigest: `steps` with `op`, `urn`, `oldState`,
// `newState`, each state carrying `protect`) and lists what must stop a pull request: a protected resource that
// would be deleted or replaced, or whose protection would be lifted (the first half of deleting it). Pulumi's
// engine also refuses to delete a protected resource, but only when `up` gets there; this says so in the PR.

/** Steps that remove the existing resource (a replacement removes it before or after creating the new one). */
export const DESTRUCTIVE_OPS = new Set([
  "delete",
  "replace",
  "create-replacement",
  "delete-replaced",
  "discard",
  "discard-replaced",
  "read-replacement",
  "import-replacement",
]);

const stateSchema = z.looseObject({ protect: z.boolean().optional(), type: z.string().optional() }).nullish();

const digestSchema = z.looseObject({
  steps: z
    .array(
      z.looseObject({
        op: z.string(),
        urn: z.string(),
        oldState: stateSchema,
        newState: stateSchema,
      }),
    )
    .optional(),
  diagnostics: z
    .array(
      z.looseObject({
        severity: z.string().optional(),
        message: z.string().optional(),
        urn: z.string().optional(),
      }),
    )
    .optional(),
  changeSummary: z.record(z.string(), z.number()).optional(),
});

export type PreviewDigest = z.infer<typeof digestSchema>;

export interface Violation {
  urn: string;
  op: string;
  why: string;
}

export interface GuardReport {
  violations: Violation[];
  /** Error diagnostics of the preview itself (a policy violation, a program error): a failed preview. */
  errors: string[];
  changeSummary: Record<string, number>;
}

/** `urn:pulumi:stack::project::type::name` → its type, for the extra "never destroy this type" list. */
function typeOf(urn: string): string {
  const parts = urn.split("::");
  return (parts[2] ?? "").split("$").pop() ?? "";
}

export function parsePreview(text: string): PreviewDigest {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new Error("the preview output is not JSON (did `pulumi preview --json` fail before printing?)");
  }
  const parsed = digestSchema.safeParse(raw, { reportInput: false });
  if (!parsed.success)
    throw new Error(`the preview JSON is not a Pulumi preview digest: ${parsed.error.issues[0]?.message}`);
  return parsed.data;
}

/**
 * @param neverDestroyTypes resource types that must never be deleted or replaced on this stack, protected or not
 *   (for prod: the instance, its Elastic IP, the backup bucket), so a forgotten `protect` cannot hide a loss.
 */
export function checkPreview(digest: PreviewDigest, neverDestroyTypes: readonly string[] = []): GuardReport {
  const violations: Violation[] = [];
  const guardedTypes = new Set(neverDestroyTypes);
  for (const step of digest.steps ?? []) {
    const wasProtected = step.oldState?.protect === true;
    const type = step.oldState?.type ?? step.newState?.type ?? typeOf(step.urn);
    if (DESTRUCTIVE_OPS.has(step.op)) {
      if (wasProtected) violations.push({ urn: step.urn, op: step.op, why: "the resource is protected" });
      else if (guardedTypes.has(type)) {
        violations.push({ urn: step.urn, op: step.op, why: `${type} must never be destroyed on this stack` });
      }
    } else if (wasProtected && step.newState && step.newState.protect !== true) {
      violations.push({ urn: step.urn, op: step.op, why: "the change removes the resource's protection" });
    }
  }
  const errors = (digest.diagnostics ?? [])
    .filter((d) => d.severity === "error")
    .map((d) => `${d.urn ? `${d.urn}: ` : ""}${(d.message ?? "").trim()}`);
  return { violations, errors, changeSummary: digest.changeSummary ?? {} };
}

export async function checkPreviewFile(
  path: string,
  neverDestroyTypes: readonly string[] = [],
): Promise<GuardReport> {
  const text = await readFile(path, "utf8").catch(() => {
    throw new Error(`cannot read ${path}`);
  });
  return checkPreview(parsePreview(text), neverDestroyTypes);
}

/** Markdown for the job summary and the log: loud, one line per resource. */
export function formatReport(stack: string, report: GuardReport): string {
  const lines: string[] = [];
  if (report.violations.length === 0 && report.errors.length === 0) {
    const summary = Object.entries(report.changeSummary)
      .map(([op, n]) => `${op} ${n}`)
      .join(", ");
    return `preview-guard: ${stack}: no protected resource is deleted, replaced or unprotected (${summary || "no changes"})`;
  }
  for (const v of report.violations)
    lines.push(`::error title=Protected resource (${stack})::${v.op} ${v.urn}: ${v.why}`);
  for (const e of report.errors) lines.push(`::error title=Preview failed (${stack})::${e.split("\n")[0]}`);
  lines.push(
    `preview-guard: ${stack}: REFUSED: ${report.violations.length} protected resource(s) would be lost, ` +
      `${report.errors.length} preview error(s)`,
  );
  return lines.join("\n");
}
