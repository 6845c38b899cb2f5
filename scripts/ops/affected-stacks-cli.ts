import { readdir } from "node:fs/promises";
import { text } from "node:stream/consumers";
import { affectedStacks, stacksFromFiles } from "./affected-stacks.js";
import { runCommand } from "./cli.js";

// `git diff --name-only <base>...HEAD | tsx scripts/ops/affected-stacks-cli.ts`: prints the affected stacks as a
// JSON array (for a GitHub Actions matrix), reading the project's stacks from the Pulumi.<stack>.yaml files.

async function main(): Promise<number> {
  const changed = (await text(process.stdin))
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);
  const stacks = stacksFromFiles(await readdir("."));
  process.stdout.write(`${JSON.stringify(affectedStacks(changed, stacks))}\n`);
  return 0;
}

runCommand("affected-stacks", main);
