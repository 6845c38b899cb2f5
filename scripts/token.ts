import { processIo, runAdmin } from "../gateway/src/admin/cli.js";

// npm run token -- --sub <who> --scope "messages:send messages:read" [--ttl 3600] [--jti <id>]
// The operator CLI's `token` (gateway/src/admin/token.ts): API_SECRET, JWT_ISSUER and JWT_AUDIENCE from the
// environment, like the gateway. The token on stdout; its id and expiry on stderr, for `npm run revoke`.
process.exitCode = await runAdmin(["token", ...process.argv.slice(2)], processIo);
