import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { secretKey, verifyToken } from "../src/auth/index.js";
import { openSqliteStore } from "../src/store/sqlite.js";

// `npm run secret`, `npm run token`, `npm run revoke` as an operator runs them (tsx scripts/<name>.ts).

const root = join(import.meta.dirname, "../..");
const dir = mkdtempSync(join(tmpdir(), "wagate-ops-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function run(script: string, args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, ["--import", "tsx", `scripts/${script}.ts`, ...args], {
    cwd: root,
    env: { PATH: process.env.PATH ?? "", ...env },
    encoding: "utf8",
    timeout: 30_000,
  });
}

describe("operator commands", () => {
  it("secret prints a new 32-byte hex secret each time", () => {
    const a = run("secret", []).stdout.trim();
    const b = run("secret", []).stdout.trim();
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(a).not.toBe(b);
  });

  it("token mints a JWT the gateway accepts, and revoke writes its id to the database", async () => {
    const secret = randomBytes(32).toString("hex");
    const minted = run("token", ["--sub", "billing", "--scope", "messages:send otp", "--ttl", "120"], {
      API_SECRET: secret,
    });
    expect(minted.status).toBe(0);
    const token = minted.stdout.trim();
    const principal = await verifyToken(token, {
      key: secretKey(secret),
      issuer: "wagate",
      audience: "wagate",
      clockToleranceSeconds: 0,
    });
    expect(principal.subject).toBe("billing");
    expect([...principal.scopes].sort()).toEqual(["messages:send", "otp"]);
    expect(principal.expiresAt - Math.floor(Date.now() / 1000)).toBeLessThanOrEqual(120);
    expect(minted.stderr).toContain(`jti=${principal.tokenId}`);
    expect(minted.stderr).not.toContain(secret);

    const databasePath = join(dir, "wagate.db");
    // Refused while no database exists there: nothing is created, nothing reported as revoked.
    const nowhere = run("revoke", [principal.tokenId], { DATABASE_PATH: databasePath });
    expect(nowhere.status).toBe(1);
    expect(nowhere.stdout).toBe("");
    expect(nowhere.stderr).toContain(`no database at ${databasePath}: nothing was written`);
    // The gateway's database, open (as a running gateway holds it).
    const store = openSqliteStore(databasePath);
    const revoked = run("revoke", [principal.tokenId, "--reason", "leaked"], { DATABASE_PATH: databasePath });
    expect(revoked.stderr).toBe("");
    expect(revoked.status).toBe(0);
    expect(revoked.stdout).toContain(`revoked ${principal.tokenId} in ${databasePath}`);
    try {
      expect(await store.isTokenRevoked(principal.tokenId)).toBe(true);
      expect(await store.isTokenRevoked("another")).toBe(false);
    } finally {
      await store.close();
    }
  });

  it("token refuses unknown scopes and a missing secret, naming the problem", () => {
    const badScope = run("token", ["--sub", "x", "--scope", "root"], { API_SECRET: "ab".repeat(32) });
    expect(badScope.status).toBe(1);
    expect(badScope.stderr).toContain("unknown scope root");
    const noSecret = run("token", ["--sub", "x", "--scope", "otp"]);
    expect(noSecret.status).toBe(1);
    expect(noSecret.stderr).toContain("API_SECRET");
  });
});
