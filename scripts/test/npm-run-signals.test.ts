import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { chmod, mkdtemp, readdir, readFile, readlink, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { freePort, waitForPort } from "../lib/processes.js";
import { ROOT } from "./helpers/run-script.js";

// `npm run gateway` and `npm run local` as a person runs them: npm itself is the child started here, and npm's
// pid is what gets SIGTERM, SIGINT or SIGHUP (a closed terminal). Afterwards every process npm's tree held
// before the signal must be gone and every port it listened on released. The same check against the scripts as
// they were (`tsx …` under npm's `sh -c`) finds survivors: that is the bug this guards.

type Signal = "SIGTERM" | "SIGINT" | "SIGHUP";
const SIGNALS: Signal[] = ["SIGTERM", "SIGINT", "SIGHUP"];

interface NpmRun {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | string>;
}

let dirs: string[] = [];
let trees: number[][] = [];

afterEach(async () => {
  // Whatever a failed assertion left running is stopped here, by pid.
  for (const pid of trees.flat()) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {}
  }
  trees = [];
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  dirs = [];
});

/** npm, with this test's node first on PATH (npm is `#!/usr/bin/env node`), in `cwd`. */
function npmRun(cwd: string, script: string, args: string[], env: NodeJS.ProcessEnv): NpmRun {
  const child = spawn("npm", ["run", "--silent", script, ...(args.length ? ["--", ...args] : [])], {
    cwd,
    env: { ...env, PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ""}` },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  const exited = new Promise<number | string>((resolve) =>
    child.once("exit", (code, signal) => resolve(code ?? signal ?? "unknown")),
  );
  return { child, output: () => output, exited };
}

/** Every descendant of `pid` (children of all its threads, recursively). */
async function descendants(pid: number): Promise<number[]> {
  const tasks = await readdir(`/proc/${pid}/task`).catch(() => [] as string[]);
  const children = (
    await Promise.all(tasks.map((t) => readFile(`/proc/${pid}/task/${t}/children`, "utf8").catch(() => "")))
  )
    .join(" ")
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
    // A zombie is gone but for its exit status, which its (new) parent has not collected yet.
    return !/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

/** Sockets listening (TCP) or bound (UDP) on this machine: "tcp:8080" → socket inodes. */
async function boundPorts(): Promise<Map<string, Set<string>>> {
  const ports = new Map<string, Set<string>>();
  for (const table of ["tcp", "tcp6", "udp", "udp6"]) {
    const lines = (await readFile(`/proc/net/${table}`, "utf8").catch(() => "")).trim().split("\n").slice(1);
    for (const line of lines) {
      // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
      const fields = line.trim().split(/\s+/);
      const [local, state, inode] = [fields[1], fields[3], fields[9]];
      if (!local || !inode) continue;
      if (table.startsWith("tcp") && state !== "0A") continue; // LISTEN
      const key = `${table.replace("6", "")}:${Number.parseInt(local.split(":")[1] ?? "0", 16)}`;
      if (!ports.has(key)) ports.set(key, new Set());
      ports.get(key)?.add(inode);
    }
  }
  return ports;
}

/** The ports the given processes listen on (TCP) or are bound to (UDP), e.g. "tcp:8443", "udp:8053". */
async function portsOf(pids: number[]): Promise<string[]> {
  const inodes = new Set<string>();
  for (const pid of pids) {
    const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
    for (const fd of fds) {
      const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => "");
      const match = /^socket:\[(\d+)\]$/.exec(target);
      if (match?.[1]) inodes.add(match[1]);
    }
  }
  const held: string[] = [];
  for (const [port, socketInodes] of await boundPorts()) {
    if ([...socketInodes].some((inode) => inodes.has(inode))) held.push(port);
  }
  return held.sort();
}

async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition()) && Date.now() < deadline) await sleep(100);
}

/**
 * Signals npm's pid and waits; returns the pids of the tree (as it was before the signal) still alive and the
 * ports it held still bound.
 */
async function signalNpm(run: NpmRun, tree: number[], ports: string[], signal: Signal, graceMs = 30_000) {
  run.child.kill(signal);
  await Promise.race([run.exited, sleep(graceMs)]);
  await waitFor(() => !tree.some(alive), graceMs);
  const bound = await boundPorts();
  return { survivors: tree.filter(alive), stillBound: ports.filter((p) => bound.has(p)) };
}

async function gatewayRun(
  cwd: string,
): Promise<{ run: NpmRun; tree: number[]; ports: string[]; port: number }> {
  const dir = await mkdtemp(join(tmpdir(), "wagate-npm-signal-"));
  dirs.push(dir);
  const port = await freePort();
  const run = npmRun(cwd, "gateway", [], {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    API_SECRET: randomBytes(32).toString("hex"),
    HOST: "127.0.0.1",
    PORT: String(port),
    DATABASE_PATH: join(dir, "wagate.db"),
    WHATSAPP_TRANSPORT: "sandbox",
    SANDBOX_OUTBOX_PATH: join(dir, "outbox.jsonl"),
    LOG_LEVEL: "info",
  });
  const pid = run.child.pid as number;
  trees.push([pid]);
  await waitForPort(port, "127.0.0.1", 60_000);
  const tree = await descendants(pid);
  trees.push(tree);
  return { run, tree, ports: await portsOf(tree), port };
}

describe("npm run gateway: npm's signal stops the gateway", () => {
  it.each(SIGNALS)(
    "%s to npm: every process gone, the port released, the gateway stopped cleanly",
    async (signal) => {
      const { run, tree, ports, port } = await gatewayRun(ROOT);
      expect(tree.length).toBeGreaterThanOrEqual(1);
      expect(ports).toContain(`tcp:${port}`);
      const { survivors, stillBound } = await signalNpm(run, tree, ports, signal);
      expect(survivors).toEqual([]);
      expect(stillBound).toEqual([]);
      // Stopped through its shutdown path (in-flight sends recorded, database closed), not killed.
      expect(run.output()).toContain('"msg":"stopping"');
    },
  );

  it("the check finds the survivors of the script as it was (tsx under npm's sh -c)", async () => {
    const old = await mkdtemp(join(tmpdir(), "wagate-npm-signal-old-"));
    dirs.push(old);
    await writeFile(
      join(old, "package.json"),
      JSON.stringify({
        private: true,
        scripts: { gateway: `${join(ROOT, "node_modules/.bin/tsx")} ${join(ROOT, "gateway/src/main.ts")}` },
      }),
    );
    const { run, tree, ports, port } = await gatewayRun(old);
    expect(ports).toContain(`tcp:${port}`);
    const { survivors, stillBound } = await signalNpm(run, tree, ports, "SIGTERM", 5_000);
    expect(survivors.length).toBeGreaterThan(0);
    expect(stillBound).toContain(`tcp:${port}`);
  });
});

describe("npm run local: npm's signal stops the whole stack", () => {
  it.each(SIGNALS)(
    "%s to npm: gateway, nginx, pebble and its DNS gone, every port released",
    async (signal) => {
      const dir = await mkdtemp(join(tmpdir(), "wagate-npm-signal-local-"));
      dirs.push(dir);
      await chmod(dir, 0o755); // nginx's workers run as www-data
      const httpPort = await freePort();
      const httpsPort = await freePort();
      const run = npmRun(
        ROOT,
        "local",
        ["--http-port", String(httpPort), "--https-port", String(httpsPort), "--dir", join(dir, "local")],
        process.env,
      );
      const pid = run.child.pid as number;
      trees.push([pid]);
      await waitFor(
        () => run.output().includes("Ctrl-C stops everything") || run.child.exitCode !== null,
        100_000,
      );
      expect(run.output()).toContain("Ctrl-C stops everything");
      const tree = await descendants(pid);
      trees.push(tree);
      // local.ts, the gateway, nginx's master and workers, pebble, its DNS helper
      expect(tree.length).toBeGreaterThanOrEqual(5);
      const ports = await portsOf(tree);
      expect(ports).toEqual(expect.arrayContaining([`tcp:${httpPort}`, `tcp:${httpsPort}`]));
      expect(ports.length).toBeGreaterThanOrEqual(5); // + the gateway, pebble's ACME and DNS
      const { survivors, stillBound } = await signalNpm(run, tree, ports, signal);
      expect(survivors).toEqual([]);
      expect(stillBound).toEqual([]);
      // npm passes SIGINT and SIGTERM on; SIGHUP reaches local.ts as its parent's death, turned into SIGTERM.
      const seen = signal === "SIGINT" ? "SIGINT" : "SIGTERM";
      expect(run.output()).toContain(`${seen}: stopping every process the stack started`);
    },
    180_000,
  );
});
