import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { requireBinary } from "../../scripts/lib/processes.js";

// DATABASE_SYNC observed from outside: the gateway's store, opened as createGateway opens it, awaits writes one
// after the other in a child process traced by strace, which counts the fsync/fdatasync calls on the WAL file.
// With `full` every awaited write is on disk before it resolves, so there are at least as many syncs as writes;
// with `normal` only the checkpointer's (about one a second). The `normal` run is the broken copy of `full`:
// it shows that the count would catch `full` silently behaving like `normal`.

const ROOT = new URL("../../", import.meta.url).pathname;
const WRITES = 20;
const dir = mkdtempSync(join(tmpdir(), "wagate-sync-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function walSyncs(sync: "full" | "normal"): Promise<number> {
  await requireBinary("strace", "strace");
  const database = join(dir, `${sync}.db`);
  const trace = join(dir, `${sync}.trace`);
  const { stdout } = await promisify(execFile)(
    "strace",
    [
      "-f",
      "-qq",
      "-y",
      "-e",
      "trace=fsync,fdatasync",
      "-o",
      trace,
      process.execPath,
      "--import",
      "tsx",
    ].concat(["gateway/test/support/durable-writes.ts", database, sync, String(WRITES)]),
    { cwd: ROOT },
  );
  expect(stdout).toBe("written\n");
  // Lines such as `1234  fdatasync(21</tmp/wagate-sync-x/full.db-wal>) = 0` (-y names the file).
  return readFileSync(trace, "utf8")
    .split("\n")
    .filter((line) => line.includes(`${database}-wal>`) && / = 0$/.test(line)).length;
}

describe("DATABASE_SYNC", () => {
  it("full: every awaited write has synced the WAL; normal: it has not", async () => {
    const full = await walSyncs("full");
    const normal = await walSyncs("normal");
    expect(full).toBeGreaterThanOrEqual(WRITES);
    expect(normal).toBeLessThan(WRITES / 2);
  });
});
