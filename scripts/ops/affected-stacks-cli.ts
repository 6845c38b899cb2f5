import { readdir } from "node:fs/promises";
import { text } from "node:stream/consumers";
import { affectedStacks, stacksFromFiles } from "./affected-stacks.js";
import { parseCli, runCommand } from "./cli.js";

// `git diff --name-only <base>...HEAD | tsx scripts/ops/affected-stacks-cli.ts`: prints the affected stacks as a
// JSON array (for a GitHub Actions matrix), reading the project's stacks from the Pulumi.<stack>.yaml files.

const USAGE = `Usage: git diff --name-only <base>...HEAD | tsx scripts/ops/affected-stacks-cli.ts

Prints, as a JSON array, the stacks (one per Pulumi.<stack>.yaml in the current directory) that the changed paths
read on stdin can affect.`;

async function main(argv: string[]): Promise<number> {
  const { values } = parseCli(argv, { help: { type: "boolean", short: "h" } }, false);
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const changed = (await text(process.stdin))
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);
  const stacks = stacksFromFiles(await readdir("."));
  process.stdout.write(`${JSON.stringify(affectedStacks(changed, stacks))}\n`);
  return 0;
}

runCommand("affected-stacks", () => main(process.argv.slice(2)));
