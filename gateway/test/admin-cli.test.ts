import { execFile, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import BetterSqlite3 from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runAdmin } from "../src/admin/cli.js";
import type { AdminIo } from "../src/admin/command.js";
import { openSqliteStore } from "../src/store/sqlite.js";
import { startTestGateway, type TestGateway } from "./support/gateway.js";

// The operator CLI (`wagate <command>`, what the image ships and `sudo wagate` runs on the VM) against a real
// gateway and its real SQLite database; and its compiled entry point, as the image runs it, with plain node.

const root = join(import.meta.dirname, "../..");
const dir = mkdtempSync(join(tmpdir(), "wagate-admin-"));
let gateway: TestGateway;

async function admin(argv: string[], env: Record<string, string | undefined>) {
  let stdout = "";
  let stderr = "";
  const io: AdminIo = {
    env,
    out: (t) => {
      stdout += t;
    },
    err: (t) => {
      stderr += t;
    },
  };
  const code = await runAdmin(argv, io);
  return { code, stdout, stderr };
}

function gatewayEnv(): Record<string, string> {
  const port = new URL(gateway.url).port;
  return {
    API_SECRET: gateway.config.API_SECRET,
    DATABASE_PATH: gateway.config.DATABASE_PATH,
    HOST: "127.0.0.1",
    PORT: port,
  };
}

beforeAll(async () => {
  gateway = await startTestGateway();
});
afterAll(async () => {
  await gateway?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("wagate token / revoke against the running gateway's database", () => {
  it("a token minted by the CLI works, and once revoked it is refused at the next request", async () => {
    const minted = await admin(
      ["token", "--sub", "ops", "--scope", "messages:read", "--ttl", "300"],
      gatewayEnv(),
    );
    expect(minted.code).toBe(0);
    const token = minted.stdout.trim();
    const jti = /jti=(\S+)/.exec(minted.stderr)?.[1] ?? "";
    expect(jti).not.toBe("");
    const path = "/v1/messages/00000000-0000-4000-8000-000000000000";
    expect((await gateway.request("GET", path, { token })).status).toBe(404);

    const revoked = await admin(["revoke", jti, "--reason", "leaked"], gatewayEnv());
    expect(revoked.stderr).toBe("");
    expect(revoked.code).toBe(0);
    expect(revoked.stdout).toBe(
      `revoked ${jti} in ${gateway.config.DATABASE_PATH}: the gateway using it refuses the token from its next request\n`,
    );
    expect((await gateway.request("GET", path, { token })).status).toBe(401);
  });

  it("refuses, writing and creating nothing, when no database is named or the file does not exist", async () => {
    const none = await admin(["revoke", "some-jti"], { API_SECRET: gateway.config.API_SECRET });
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(
      /^wagate revoke: which database\? give --database <file> or set DATABASE_PATH/,
    );
    const missing = join(dir, "data", "wagate.db");
    const absent = await admin(["revoke", "some-jti", "--database", missing], {});
    expect(absent.code).toBe(1);
    expect(absent.stderr).toContain(`no database at ${missing}: nothing was written`);
    expect(absent.stdout).toBe("");
    expect(existsSync(missing)).toBe(false);
    expect(existsSync(join(dir, "data"))).toBe(false);
  });

  it("refuses a file that is not a wagate database", async () => {
    const other = join(dir, "other.db");
    new BetterSqlite3(other).exec("CREATE TABLE t (x)").close();
    const text = join(dir, "notes.db");
    writeFileSync(text, "not sqlite at all, just text that is long enough to be read as a header");
    expect((await admin(["revoke", "j", "--database", other], {})).stderr).toMatch(
      /is not a wagate database/,
    );
    expect((await admin(["revoke", "j", "--database", text], {})).stderr).toMatch(/is not a readable SQLite/);
  });

  it("refuses a database no gateway has open unless --offline, and then says so", async () => {
    const idle = join(dir, "idle.db");
    await openSqliteStore(idle).close();
    expect(existsSync(`${idle}-shm`)).toBe(false);
    const refused = await admin(["revoke", "j1"], { DATABASE_PATH: idle });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(
      /no gateway has .*idle\.db open .*nothing was written.*sudo wagate revoke/,
    );
    const check = openSqliteStore(idle);
    expect(await check.isTokenRevoked("j1")).toBe(false);
    await check.close();

    const offline = await admin(["revoke", "j1", "--offline"], { DATABASE_PATH: idle });
    expect(offline.code).toBe(0);
    expect(offline.stdout).toBe(
      `revoked j1 in ${idle} (offline): a gateway started on this file will refuse the token\n`,
    );
    const after = openSqliteStore(idle);
    expect(await after.isTokenRevoked("j1")).toBe(true);
    await after.close();
  });
});

describe("wagate status / backup", () => {
  it("status reports the gateway ready and what its database holds", async () => {
    const token = await gateway.token(["messages:send"]);
    const sent = await gateway.request("POST", "/v1/messages", {
      token,
      body: { type: "text", to: "+14155550123", text: { body: "status check" } },
    });
    expect(sent.status).toBe(202);
    const json = await admin(["status", "--json"], gatewayEnv());
    expect(json.code).toBe(0);
    const status = JSON.parse(json.stdout);
    expect(status.gateway.ready).toBe(true);
    expect(status.database).toMatchObject({ path: gateway.config.DATABASE_PATH, inUse: true });
    const total = Object.values(status.messages as Record<string, number>).reduce((a, b) => a + b, 0);
    expect(total).toBeGreaterThanOrEqual(1);
    expect(status.revokedTokens).toBeGreaterThanOrEqual(1);
    const text = await admin(["status"], gatewayEnv());
    expect(text.stdout).toMatch(/^gateway {5}ready \(http:\/\/127\.0\.0\.1:\d+\/readyz: 200\)$/m);
  });

  it("status says NOT READY and exits 3 when nothing answers on the gateway's port", async () => {
    const down = await admin(["status"], { ...gatewayEnv(), PORT: "1" });
    expect(down.code).toBe(3);
    expect(down.stdout).toMatch(/^gateway {5}NOT READY/m);
  });

  it("backup writes an integrity-checked online copy that holds the revocations", async () => {
    const target = join(dir, "copies", "copy.db");
    const made = await admin(["backup", target], gatewayEnv());
    expect(made.stderr).toBe("");
    expect(made.stdout).toBe(`backup written: ${target} (restore it with the same API_SECRET)\n`);
    const copy = new BetterSqlite3(target, { readonly: true });
    expect(
      (copy.prepare("SELECT count(*) AS n FROM revoked_tokens").get() as { n: number }).n,
    ).toBeGreaterThan(0);
    copy.close();
    expect((await admin(["backup", target], gatewayEnv())).stderr).toMatch(/exists: choose another file/);
  });

  it("usage: an unknown command or option exits 2 naming it", async () => {
    const unknown = await admin(["frobnicate"], {});
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/^wagate: unknown command frobnicate/);
    const bad = await admin(["status", "--colour"], {});
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^wagate status: .*--colour/);
    const help = await admin(["--help"], {});
    expect(help.stdout).toMatch(/token .*\n.*revoke .*\n.*status .*\n.*backup .*\n.*link /);
    // `wagate link` is the same command as `npm run link` (cli/link.ts), reached through the VM's `sudo wagate`.
    const link = await admin(["link"], {});
    expect(link.code).toBe(2);
    expect(link.stderr).toMatch(/^link: name exactly one number/);
    const secretless = await admin(["link", "sales"], {});
    expect(secretless.code).toBe(2);
    expect(secretless.stderr).toMatch(/API_SECRET is not set/);
  });
});

describe("the compiled entry point the image runs", () => {
  it("node gateway/dist/admin/main.js status, built with the image's tsconfig", async () => {
    const outDir = join(root, "gateway", `.admin-build-${process.pid}`);
    try {
      const build = spawnSync(
        process.execPath,
        [
          join(root, "node_modules/typescript/bin/tsc"),
          "-p",
          "gateway/tsconfig.build.json",
          "--outDir",
          outDir,
        ],
        { cwd: root, encoding: "utf8", timeout: 240_000 },
      );
      expect(build.stdout + build.stderr).toBe("");
      expect(build.status).toBe(0);
      // Asynchronously: the gateway it asks runs in this very process.
      const run = await promisify(execFile)(process.execPath, [join(outDir, "admin/main.js"), "status"], {
        cwd: root,
        env: { PATH: process.env.PATH ?? "", ...gatewayEnv() },
        encoding: "utf8",
        timeout: 30_000,
      });
      expect(run.stderr).toBe("");
      expect(run.stdout).toMatch(/^gateway {5}ready/m);
    } finally {
      rmSync(outDir, { recursive: true, force: true });
    }
  }, 300_000);
});
