import { parseCli, runCommand, stringFlag, UsageError } from "./cli.js";
import { checkPreviewFile, formatReport } from "./preview-guard.js";

// `npx tsx scripts/ops/preview-guard-cli.ts --stack prod preview.json [--never-destroy type,...]`, run by
// .github/workflows/preview.yml after `pulumi preview --json`. Exit 1 (with GitHub error annotations) when a
// protected resource would be deleted, replaced or unprotected, or when the preview itself reported an error.

const USAGE = `Usage: tsx scripts/ops/preview-guard-cli.ts --stack <name> <preview.json> [--never-destroy <type,...>]

Fails when \`pulumi preview --json\` shows a protected resource deleted, replaced or unprotected, a resource of
a --never-destroy type deleted or replaced, or an error diagnostic.`;

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseCli(argv, {
    help: { type: "boolean", short: "h" },
    stack: { type: "string" },
    "never-destroy": { type: "string" },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const stack = stringFlag(values.stack);
  if (!stack) throw new UsageError("--stack is required");
  if (positionals.length !== 1) throw new UsageError("give the preview JSON file");
  const types = (stringFlag(values["never-destroy"]) ?? "")
    .split(",")
    .map((t) => t.trim())
    .filter(Boolean);
  const report = await checkPreviewFile(positionals[0] as string, types);
  const text = formatReport(stack, report);
  const failed = report.violations.length > 0 || report.errors.length > 0;
  (failed ? process.stderr : process.stdout).write(`${text}\n`);
  return failed ? 1 : 0;
}

runCommand("preview-guard", () => main(process.argv.slice(2)));
