import { spawn } from "node:child_process";
import { once } from "node:events";
import { createWriteStream } from "node:fs";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jsonLine } from "./helpers/access-logs.js";
import { runScript } from "./helpers/run-script.js";

// A log larger than the heap the command is allowed: it only finishes if it streams. The same heap limit makes
// reading the file whole fail, which shows the limit is tight enough to tell the two apart.

const HEAP_MB = 16;
const CLIENTS = 2000;
const REPEATS = 100;
const START = Date.UTC(2026, 10, 27, 10, 0, 0);

let dir: string;
let log: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "wagate-streaming-"));
  log = join(dir, "access.log");
  const lines: string[] = [];
  for (let i = 0; i < CLIENTS; i++) {
    const ip = `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`;
    const method = i % 2 ? "GET" : "POST";
    lines.push(
      jsonLine({
        ip,
        time: START + i * 1000,
        method,
        path: `/v1/messages/${i}`,
        status: i % 5 ? 200 : 429,
        waf: false,
      }),
    );
  }
  const chunk = `${lines.join("\n")}\n`;
  const out = createWriteStream(log);
  for (let r = 0; r < REPEATS; r++) if (!out.write(chunk)) await once(out, "drain");
  out.end();
  await once(out, "finish");
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function naiveReadExitCode(path: string): Promise<number | null> {
  const child = spawn(
    process.execPath,
    [
      `--max-old-space-size=${HEAP_MB}`,
      "-e",
      "require('fs').readFileSync(process.argv[1], 'utf8').split('\\n')",
      path,
    ],
    { stdio: "ignore" },
  );
  return once(child, "close").then(([code]) => code as number | null);
}

describe("suspicious-ips on a log larger than its heap", () => {
  it("is larger than the heap limit, which reading it whole cannot survive", async () => {
    expect((await stat(log)).size).toBeGreaterThan(HEAP_MB * 1024 * 1024);
    expect(await naiveReadExitCode(log)).not.toBe(0);
  });

  it("streams it within the limit with exact totals", async () => {
    const result = await runScript("suspicious-ips.ts", [log, "--json", "--sort", "429", "--top", "3"], {
      nodeFlags: [`--max-old-space-size=${HEAP_MB}`],
    });
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    const out = JSON.parse(result.stdout) as {
      entries: number;
      malformed: number;
      clients: number;
      ips: Array<{ ip: string; requests: number; status429: number; posts: number }>;
    };
    expect(out.entries).toBe(CLIENTS * REPEATS);
    expect(out.malformed).toBe(0);
    expect(out.clients).toBe(CLIENTS);
    // Clients 0, 5, 10 … answer 429; among those, equal counts fall back to the IP order.
    expect(out.ips).toMatchObject([
      { ip: "10.0.0.0", requests: REPEATS, status429: REPEATS, posts: REPEATS },
      { ip: "10.0.0.10", requests: REPEATS, status429: REPEATS, posts: REPEATS },
      { ip: "10.0.0.100", requests: REPEATS, status429: REPEATS, posts: REPEATS },
    ]);
  });
});
