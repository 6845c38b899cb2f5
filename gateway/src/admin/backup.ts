import { existsSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import BetterSqlite3 from "better-sqlite3";
import { type AdminCommand, AdminError, parseCommandArgs, UsageError } from "./command.js";
import { gatewayDatabase } from "./database-file.js";

// `wagate backup [<file>] [--database <file>]`: an online copy with SQLite's backup API (consistent while the
// gateway writes), checked with PRAGMA integrity_check. Default: <database dir>/backups/wagate-<stamp>.db. On the
// VM, `sudo wagate backup` runs wagate-backup.service instead, which also uploads to S3. A copy is fully usable
// only with the same API_SECRET: webhook secrets and queued OTP codes are sealed under keys derived from it.

const usage = "backup [<file>] [--database <file>]";

export const backupCommand: AdminCommand = {
  name: "backup",
  summary: "online copy of the database, integrity-checked (usable with the same API_SECRET)",
  usage,
  async run(args, io) {
    const parsed = parseCommandArgs(args, {
      options: { database: { type: "string" } },
      allowPositionals: true,
    });
    if (parsed.positionals.length > 1) throw new UsageError("give at most one destination file");
    const database = gatewayDatabase(parsed.values.database, io.env);
    const stamp = new Date()
      .toISOString()
      .replace(/[-:]/g, "")
      .replace(/\.\d+Z$/, "Z");
    const target = resolve(
      parsed.positionals[0] ?? join(dirname(database.path), "backups", `wagate-${stamp}.db`),
    );
    if (existsSync(target)) throw new AdminError(`${target} exists: choose another file`);
    mkdirSync(dirname(target), { recursive: true, mode: 0o700 });
    const source = new BetterSqlite3(database.path, { fileMustExist: true });
    try {
      source.pragma("busy_timeout = 10000");
      await source.backup(target);
    } finally {
      source.close();
    }
    const copy = new BetterSqlite3(target, { readonly: true, fileMustExist: true });
    try {
      const check = copy.pragma("integrity_check", { simple: true });
      if (check !== "ok")
        throw new AdminError(`the copy ${target} failed its integrity check: ${String(check)}`);
    } finally {
      copy.close();
    }
    io.out(`backup written: ${target} (restore it with the same API_SECRET)\n`);
    return 0;
  },
};
