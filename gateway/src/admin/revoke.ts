import { openSqliteStore } from "../store/sqlite.js";
import { type AdminCommand, AdminError, parseCommandArgs, UsageError } from "./command.js";
import { gatewayDatabase } from "./database-file.js";

// `wagate revoke <jti> [--reason <text>] [--database <file>] [--offline]`: adds a token id to the revoked list
// of the gateway's database; the gateway refuses the token from its next request, without a restart (it
// watches the database for other connections' commits: store/revocation-list.ts).

const usage = "revoke <jti> [--reason <text>] [--database <file>] [--offline]";

export const revokeCommand: AdminCommand = {
  name: "revoke",
  summary: "add a token id (jti) to the revoked list; refused from the gateway's next request",
  usage,
  async run(args, io) {
    const parsed = parseCommandArgs(args, {
      options: {
        reason: { type: "string" },
        database: { type: "string" },
        offline: { type: "boolean", default: false },
      },
      allowPositionals: true,
    });
    const jti = parsed.positionals[0];
    if (!jti || parsed.positionals.length !== 1 || jti.length > 200)
      throw new UsageError("give exactly one token id (jti)");
    const database = gatewayDatabase(parsed.values.database, io.env);
    if (!database.inUse && !parsed.values.offline) {
      throw new AdminError(
        `no gateway has ${database.path} open (no ${database.path}-shm): nothing was written. ` +
          "A deployed gateway's database is on its VM: ssh there and run sudo wagate revoke <jti>, or " +
          "POST /v1/admin/revocations with an admin token. --offline writes into this file anyway.",
      );
    }
    const store = openSqliteStore(database.path);
    try {
      await store.revokeToken(jti, Date.now(), parsed.values.reason);
    } finally {
      await store.close();
    }
    io.out(
      database.inUse
        ? `revoked ${jti} in ${database.path}: the gateway using it refuses the token from its next request\n`
        : `revoked ${jti} in ${database.path} (offline): a gateway started on this file will refuse the token\n`,
    );
    return 0;
  },
};
