import { chmod, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../scripts/lib/local-stack.js";
import { freePort, type Started, startProcess } from "../../scripts/lib/processes.js";

// `npm run local` as a person runs it: the CLI prints what to use, stays in the foreground, and on SIGTERM stops
// every process it started (found here as its process tree before the signal).

let dir: string | undefined;
let cli: Started | undefined;

async function descendants(pid: number): Promise<number[]> {
  const children = (await readFile(`/proc/${pid}/task/${pid}/children`, "utf8").catch(() => ""))
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .map(Number);
  const nested = await Promise.all(children.map(descendants));
  return [...children, ...nested.flat()];
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

afterAll(async () => {
  await cli?.stop(20_000);
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("npm run local (scripts/local.ts)", () => {
  it("prints the base URL, curl example, token and outbox, then stops everything on SIGTERM", async () => {
    dir = await mkdtemp(join(tmpdir(), "wagate-local-cli-"));
    await chmod(dir, 0o755);
    const root = join(dir, "local");
    const httpPort = await freePort();
    const httpsPort = await freePort();
    let output = "";
    cli = startProcess(
      "local",
      process.execPath,
      [
        "--import",
        "tsx",
        join(REPO_ROOT, "scripts/local.ts"),
        "--http-port",
        String(httpPort),
        "--https-port",
        String(httpsPort),
        "--dir",
        root,
      ],
      { cwd: REPO_ROOT },
    );
    cli.child.stdout?.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    cli.child.stderr?.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    const deadline = Date.now() + 100_000;
    while (
      !output.includes("Ctrl-C stops everything") &&
      Date.now() < deadline &&
      cli.child.exitCode === null
    ) {
      await sleep(200);
    }
    expect(output).toContain("Ctrl-C stops everything");
    const facts = JSON.parse(await readFile(join(root, "stack.json"), "utf8")) as Record<string, string>;
    expect(output).toContain(`Base URL        https://gateway.test:${httpsPort}`);
    expect(output).toContain(`--cacert ${facts.caCert} --resolve gateway.test:${httpsPort}:127.0.0.1`);
    expect(output).toContain(`TOKEN=${facts.adminToken}`);
    expect(output).toContain(`Sandbox outbox  ${facts.sandboxOutbox}`);
    // The secrets that are not meant for the person stay out of the output.
    expect(output).not.toContain(facts.appSecret);
    expect(output).not.toContain((await readFile(join(root, "api-secret"), "utf8")).trim());

    const tree = await descendants(cli.pid);
    // gateway, nginx master and workers, pebble, its DNS helper
    expect(tree.length).toBeGreaterThanOrEqual(5);
    cli.child.kill("SIGTERM");
    expect(await cli.exited).toBe(0);
    const gone = Date.now() + 10_000;
    while (tree.some(alive) && Date.now() < gone) await sleep(100);
    expect(tree.filter(alive)).toEqual([]);
    expect(output).toContain("SIGTERM: stopping every process the stack started");
  });
});
