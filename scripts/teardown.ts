import { createInterface } from "node:readline";
import { parseCli, runCommand, stringFlag, UsageError } from "./ops/cli.js";
import { runPulumi } from "./ops/pulumi-cli.js";
import { destroyVerdict } from "./ops/stack-guard.js";

const USAGE = `Usage: npm run teardown -- <stack> [--yes] [--cwd <project dir>]

Destroys every resource of a disposable stack (dev, staging, pr-<number>) with \`pulumi destroy\`, keeping the
stack and its Pulumi.<stack>.yaml so it can be brought back with \`pulumi up\`. Refuses prod, and any stack whose
resources the program protects, before running anything.

First shows what will go (\`pulumi destroy --preview-only\`), then asks you to type the stack's name.

Options:
  --yes          do not ask (for CI); the guard still applies
  --cwd <dir>    the Pulumi project directory (default: the current directory)
  -h, --help     this help

Exit code: 0 destroyed, 1 refused, aborted or pulumi failed, 2 bad usage.`;

async function ask(question: string): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return await new Promise<string>((resolve) => {
      rl.once("close", () => resolve(""));
      rl.question(question, resolve);
    });
  } finally {
    rl.close();
  }
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseCli(argv, {
    help: { type: "boolean", short: "h" },
    yes: { type: "boolean", short: "y" },
    cwd: { type: "string" },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError("give exactly one stack name");
  const verdict = destroyVerdict(positionals[0] as string);
  if (!verdict.allowed) {
    process.stderr.write(`teardown: refusing to destroy stack ${verdict.stack}: ${verdict.reason}\n`);
    return 1;
  }
  const stack = verdict.stack;
  const cwd = stringFlag(values.cwd) ?? process.cwd();

  process.stderr.write(`teardown: what \`pulumi destroy\` would delete in stack ${stack}:\n`);
  const preview = await runPulumi(["destroy", "--preview-only", "--stack", stack, "--non-interactive"], cwd);
  if (preview !== 0) {
    process.stderr.write(
      `teardown: the destroy preview of ${stack} failed (exit ${preview}); nothing was destroyed\n`,
    );
    return 1;
  }
  if (!values.yes) {
    const answer = (await ask(`Type the stack name (${stack}) to destroy its resources: `)).trim();
    if (answer !== stack) {
      process.stderr.write("teardown: aborted; nothing was destroyed\n");
      return 1;
    }
  }
  // Never `--remove`: it would also delete Pulumi.<stack>.yaml, the stack's settings.
  const code = await runPulumi(["destroy", "--yes", "--stack", stack, "--non-interactive"], cwd);
  if (code !== 0) {
    process.stderr.write(`teardown: pulumi destroy failed (exit ${code})\n`);
    return 1;
  }
  process.stderr.write(`teardown: stack ${stack} destroyed; its configuration is kept\n`);
  return 0;
}

runCommand("teardown", () => main(process.argv.slice(2)));
