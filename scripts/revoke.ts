import { parseArgs } from "node:util";
import { openSqliteStore } from "../gateway/src/store/sqlite.js";

// npm run revoke -- <jti> [--reason "<text>"]
// Writes the token id to the revoked list of the database at DATABASE_PATH (the gateway's own). Takes effect
// on the gateway's next request with that token; no restart needed.

function fail(message: string): never {
  process.stderr.write(`revoke: ${message}\nusage: npm run revoke -- <jti> [--reason <text>]\n`);
  process.exit(1);
}

let parsed: ReturnType<typeof parseArgs<{ options: { reason: { type: "string" } }; allowPositionals: true }>>;
try {
  parsed = parseArgs({ options: { reason: { type: "string" } }, allowPositionals: true, strict: true });
} catch (error) {
  fail((error as Error).message);
}
const jti = parsed.positionals[0];
if (!jti || parsed.positionals.length !== 1 || jti.length > 200) fail("give exactly one token id (jti)");
const path = process.env.DATABASE_PATH ?? "data/wagate.db";
const store = openSqliteStore(path);
try {
  await store.revokeToken(jti, Date.now(), parsed.values.reason);
  process.stdout.write(`revoked ${jti}\n`);
} finally {
  await store.close();
}
