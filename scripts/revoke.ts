import { processIo, runAdmin } from "../gateway/src/admin/cli.js";

// npm run revoke -- <jti> [--reason <text>] [--database <file>] [--offline]
// The operator CLI's `revoke` (gateway/src/admin/revoke.ts): the database named by --database or DATABASE_PATH,
// which must exist and be open by a gateway (--offline writes into a file no gateway has open). A deployed
// gateway's database is on its VM: `sudo wagate revoke <jti>` there.
process.exitCode = await runAdmin(["revoke", ...process.argv.slice(2)], processIo);
