import { z } from "zod";
import { isScope, mintToken, SCOPES } from "../auth/index.js";
import { ConfigError, loadConfig } from "../config.js";
import { type AdminCommand, AdminError, parseCommandArgs, UsageError } from "./command.js";

// `wagate token --sub <who> --scope "<scopes>" [--ttl <seconds>] [--jti <id>]`: mints an API token with the
// gateway's own API_SECRET, JWT_ISSUER and JWT_AUDIENCE (read from the environment, like the gateway). The token
// goes to stdout, alone, so it can be captured; its id and expiry go to stderr, for `wagate revoke`.

const usage = `token --sub <subject> --scope "<scope> [<scope> ...]" [--ttl <seconds>] [--jti <id>]
  scopes: ${SCOPES.join(", ")}`;

const argsSchema = z.object({
  sub: z.string().min(1).max(200),
  scope: z.array(z.string()).min(1),
  ttl: z.coerce
    .number()
    .int()
    .positive()
    .max(366 * 24 * 3600),
  jti: z.string().min(1).max(200).optional(),
});

export const tokenCommand: AdminCommand = {
  name: "token",
  summary: "mint an API token (stdout) with the gateway's API_SECRET; its jti and expiry on stderr",
  usage,
  async run(args, io) {
    const { values } = parseCommandArgs(args, {
      options: {
        sub: { type: "string" },
        scope: { type: "string", multiple: true },
        ttl: { type: "string", default: "3600" },
        jti: { type: "string" },
      },
    });
    const parsed = argsSchema.safeParse(values);
    if (!parsed.success)
      throw new UsageError(
        `--${String(parsed.error.issues[0]?.path[0])}: ${parsed.error.issues[0]?.message}`,
      );
    const scopes = parsed.data.scope.flatMap((s) => s.split(/[\s,]+/)).filter((s) => s.length > 0);
    const unknown = scopes.filter((s) => !isScope(s));
    if (unknown.length > 0) throw new AdminError(`unknown scope ${unknown.join(", ")}`);
    let config: ReturnType<typeof loadConfig>;
    try {
      config = loadConfig(io.env);
    } catch (error) {
      if (error instanceof ConfigError) throw new AdminError(error.message);
      throw error;
    }
    const minted = await mintToken({
      secret: config.API_SECRET,
      sub: parsed.data.sub,
      scopes: scopes.filter(isScope),
      ttlSeconds: parsed.data.ttl,
      issuer: config.JWT_ISSUER,
      audience: config.JWT_AUDIENCE,
      ...(parsed.data.jti ? { jti: parsed.data.jti } : {}),
    });
    io.err(`jti=${minted.jti} expires=${minted.expiresAt.toISOString()}\n`);
    io.out(`${minted.token}\n`);
    return 0;
  },
};
