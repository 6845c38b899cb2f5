import { parseArgs } from "node:util";
import { z } from "zod";
import { isScope, mintToken, SCOPES } from "../gateway/src/auth/index.js";
import { loadConfig } from "../gateway/src/config.js";

// npm run token -- --sub <who> --scope "messages:send messages:read" [--ttl 3600] [--jti <id>]
// Reads API_SECRET, JWT_ISSUER and JWT_AUDIENCE from the environment, like the gateway. Prints the token on
// stdout (and its id and expiry on stderr, for `npm run revoke`).

const usage = `usage: npm run token -- --sub <subject> --scope "<scope> [<scope> ...]" [--ttl <seconds>] [--jti <id>]
scopes: ${SCOPES.join(", ")}`;

function fail(message: string): never {
  process.stderr.write(`token: ${message}\n${usage}\n`);
  process.exit(1);
}

const args = z.object({
  sub: z.string().min(1).max(200),
  scope: z.array(z.string()).min(1),
  ttl: z.coerce
    .number()
    .int()
    .positive()
    .max(366 * 24 * 3600),
  jti: z.string().min(1).max(200).optional(),
});

async function main() {
  let values: Record<string, unknown>;
  try {
    ({ values } = parseArgs({
      options: {
        sub: { type: "string" },
        scope: { type: "string", multiple: true },
        ttl: { type: "string", default: "3600" },
        jti: { type: "string" },
        help: { type: "boolean" },
      },
      strict: true,
    }));
  } catch (error) {
    fail((error as Error).message);
  }
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    return;
  }
  const parsed = args.safeParse(values);
  if (!parsed.success)
    fail(`--${String(parsed.error.issues[0]?.path[0])}: ${parsed.error.issues[0]?.message}`);
  const scopes = parsed.data.scope.flatMap((s) => s.split(/[\s,]+/)).filter((s) => s.length > 0);
  const unknown = scopes.filter((s) => !isScope(s));
  if (unknown.length > 0) fail(`unknown scope ${unknown.join(", ")}`);
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    fail((error as Error).message);
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
  process.stderr.write(`jti=${minted.jti} expires=${minted.expiresAt.toISOString()}\n`);
  process.stdout.write(`${minted.token}\n`);
}

await main();
