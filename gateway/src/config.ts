import { z } from "zod";

// The gateway's whole configuration comes from the environment and is validated once, at start. A bad or
// missing value stops the process with one line naming the variable; there is no default secret.

const DEFAULT_GRAPH_API_BASE_URL = "https://graph.facebook.com/v21.0";

const hexSecret = (minBytes: number) =>
  z
    .string({ error: "is required" })
    .regex(/^[0-9a-fA-F]+$/, { error: "must be hexadecimal" })
    .refine((s) => s.length % 2 === 0 && s.length / 2 >= minBytes, {
      error: `must be at least ${minBytes} bytes (${minBytes * 2} hex characters); make one with: npm run secret`,
    });

const optionalText = z
  .string()
  .optional()
  .transform((s) => (s === undefined || s.trim() === "" ? undefined : s));

const integer = (def: number, min: number, max: number) =>
  z.coerce
    .number({ error: "must be a number" })
    .int({ error: "must be an integer" })
    .min(min, { error: `must be at least ${min}` })
    .max(max, { error: `must be at most ${max}` })
    .default(def);

export const configSchema = z
  .object({
    API_SECRET: hexSecret(32),
    // Set only while rotating API_SECRET: what was sealed or hashed under it keeps working (tokens do not).
    API_SECRET_PREVIOUS: optionalText.pipe(hexSecret(32).optional()),
    HOST: z.string().min(1).default("127.0.0.1"),
    PORT: integer(8080, 0, 65535),
    DATABASE_PATH: z.string().min(1).default("data/wagate.db"),
    // full: a 202 follows the WAL's sync (survives a power cut); normal (opt-in): it follows COMMIT only, so a power
    // cut or kernel crash can take about the last second of accepted messages. See store/sqlite.ts.
    DATABASE_SYNC: z.enum(["full", "normal"], { error: "must be full or normal" }).default("full"),
    JWT_ISSUER: z.string().min(1).default("wagate"),
    JWT_AUDIENCE: z.string().min(1).default("wagate"),
    JWT_CLOCK_TOLERANCE_SECONDS: integer(30, 0, 300),
    WHATSAPP_TRANSPORT: z
      .enum(["cloud", "sandbox"], { error: "must be cloud or sandbox" })
      .default("sandbox"),
    SANDBOX_OUTBOX_PATH: z.string().min(1).default("data/sandbox-outbox.jsonl"),
    WHATSAPP_ACCESS_TOKEN: optionalText,
    WHATSAPP_PHONE_NUMBER_ID: optionalText.pipe(
      z
        .string()
        .regex(/^[0-9]{1,32}$/, { error: "must be the numeric phone number id" })
        .optional(),
    ),
    // The default number's WhatsApp Business Account: where its templates are listed (GET /v1/templates, sends checked).
    WHATSAPP_WABA_ID: optionalText.pipe(
      z
        .string()
        .regex(/^[0-9]{1,32}$/, { error: "must be the numeric WhatsApp Business Account id" })
        .optional(),
    ),
    WHATSAPP_APP_SECRET: optionalText,
    WHATSAPP_VERIFY_TOKEN: optionalText,
    GRAPH_API_BASE_URL: z
      .url({ protocol: /^https?$/, error: "must be an http(s) URL" })
      .default(DEFAULT_GRAPH_API_BASE_URL)
      .transform((u) => u.replace(/\/+$/, "")),
    // How long a number's template list is used before it is re-read in the background (templates/catalog.ts).
    TEMPLATES_CACHE_SECONDS: integer(300, 10, 86_400),
    OTP_TTL_SECONDS: integer(300, 30, 600),
    OTP_LENGTH: integer(6, 6, 10),
    OTP_MAX_ATTEMPTS: integer(5, 1, 5),
    OTP_RESEND_COOLDOWN_SECONDS: integer(30, 0, 3600),
    OTP_HOURLY_LIMIT: integer(5, 1, 100),
    OTP_NUMBER_HOURLY_LIMIT: integer(20, 1, 1000),
    OTP_TEMPLATE_NAME: z.string().min(1).max(512).default("otp_code"),
    OTP_TEMPLATE_LANGUAGE: z.string().min(2).max(16).default("en_US"),
    // Sends in flight must cover rate × Graph API latency plus each send's claim and record turnaround: at 50 ms
    // latency 64 reached 720-1,120 msg/s uncapped (falling whenever the CPU was shared), 128 reached 1,715-1,930
    // (npm run bench:broadcast); at Meta's 1,000 msg/s tier and ~100 ms latency 64 could not keep up at all.
    OUTBOX_CONCURRENCY: integer(128, 1, 256),
    OUTBOX_MAX_ATTEMPTS: integer(8, 1, 100),
    OUTBOX_BACKOFF_BASE_MS: integer(1000, 1, 3_600_000),
    OUTBOX_BACKOFF_MAX_MS: integer(300_000, 1, 86_400_000),
    OUTBOX_SEND_TIMEOUT_MS: integer(15_000, 100, 120_000),
    OUTBOX_IN_DOUBT_GRACE_SECONDS: integer(300, 0, 86_400),
    OUTBOX_POLL_INTERVAL_MS: integer(250, 10, 60_000),
    BROADCAST_RATE_PER_SECOND: integer(80, 1, 1000),
    BROADCAST_PAIR_INTERVAL_SECONDS: integer(6, 0, 3600),
    LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
    TRUST_PROXY: z
      .enum(["true", "false", "loopback"], { error: "must be true, false or loopback" })
      .default("loopback"),
    REPLY_COOLDOWN_SECONDS: integer(3600, 0, 7 * 86_400),
    REPLY_MAX_RULES: integer(100, 1, 10_000),
    WEBHOOK_ALLOW_HTTP: z.enum(["true", "false"], { error: "must be true or false" }).default("false"),
    WEBHOOK_ALLOWED_HOSTS: z
      .string()
      .default("")
      .transform((s) =>
        s
          .split(",")
          .map((h) =>
            h
              .trim()
              .toLowerCase()
              .replace(/^\[|\]$/g, ""),
          )
          .filter((h) => h.length > 0),
      ),
    WEBHOOK_MAX_PER_SUBJECT: integer(25, 1, 1000),
    WEBHOOK_TIMEOUT_MS: integer(5000, 100, 30_000),
    WEBHOOK_CONCURRENCY: integer(8, 1, 256),
    WEBHOOK_BACKOFF_BASE_MS: integer(30_000, 1, 3_600_000),
    WEBHOOK_BACKOFF_MAX_MS: integer(3_600_000, 1, 86_400_000),
    WEBHOOK_RETRY_WINDOW_SECONDS: integer(86_400, 1, 7 * 86_400),
    WEBHOOK_MAX_ATTEMPTS: integer(60, 1, 1000),
    WEBHOOK_POLL_INTERVAL_MS: integer(500, 10, 60_000),
    // WhatsApp Web numbers (numbers registry, transport web).
    WEB_LINK_TIMEOUT_SECONDS: integer(60, 10, 60),
    WEB_UNLINKED_WAIT_SECONDS: integer(3600, 0, 7 * 86_400),
    WEB_RECONNECT_BASE_MS: integer(2000, 10, 600_000),
    WEB_RECONNECT_MAX_MS: integer(300_000, 100, 3_600_000),
    // Ban-aware broadcast defaults for web numbers: a jittered pace of seconds per message and a daily cap.
    WEB_BROADCAST_MIN_SECONDS: integer(8, 1, 3600),
    WEB_BROADCAST_MAX_SECONDS: integer(20, 1, 3600),
    WEB_BROADCAST_DAILY_CAP: integer(200, 1, 100_000),
  })
  .superRefine((c, ctx) => {
    if (
      c.API_SECRET_PREVIOUS !== undefined &&
      c.API_SECRET_PREVIOUS.toLowerCase() === c.API_SECRET.toLowerCase()
    )
      ctx.addIssue({ code: "custom", path: ["API_SECRET_PREVIOUS"], message: "must differ from API_SECRET" });
    if (c.WHATSAPP_TRANSPORT !== "cloud") return;
    for (const name of ["WHATSAPP_ACCESS_TOKEN", "WHATSAPP_PHONE_NUMBER_ID"] as const) {
      if (!c[name])
        ctx.addIssue({ code: "custom", path: [name], message: "is required when WHATSAPP_TRANSPORT=cloud" });
    }
  });

export type Config = z.infer<typeof configSchema>;

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    detail: string,
  ) {
    super(`invalid configuration: ${variable} ${detail}`);
    this.name = "ConfigError";
  }
}

/** Validates the environment; throws a ConfigError whose message is one line naming the variable. */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const result = configSchema.safeParse(env);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const variable = String(issue?.path[0] ?? "environment");
  // Never echo the rejected value: it may be a secret.
  const detail =
    issue?.code === "invalid_type" && env[variable] === undefined ? "is required" : issue?.message;
  throw new ConfigError(variable, detail ?? "is invalid");
}

/**
 * The variables that hold secrets. The deployment never takes them as plain settings (the stack has an
 * encrypted key for each); any variable whose name says secret, token, password or key is treated the same.
 */
export const SECRET_VARIABLES = [
  "API_SECRET",
  "API_SECRET_PREVIOUS",
  "WHATSAPP_ACCESS_TOKEN",
  "WHATSAPP_APP_SECRET",
  "WHATSAPP_VERIFY_TOKEN",
] as const;

const SECRET_NAME = /SECRET|TOKEN|PASSWORD|PASSPHRASE|PRIVATE_KEY|CREDENTIAL/;

export function isSecretVariable(name: string): boolean {
  return (SECRET_VARIABLES as readonly string[]).includes(name) || SECRET_NAME.test(name);
}

/** Every variable the gateway reads. */
export const CONFIG_VARIABLES: readonly string[] = Object.keys(configSchema.shape);

/**
 * Checks one variable's value with this very schema (what the gateway would say at start), for tools that
 * validate settings before a gateway runs them (the Pulumi program at preview). Returns the problem — never the
 * value — or undefined when the gateway would accept it.
 */
export function variableProblem(name: string, value: string): string | undefined {
  const schema = (configSchema.shape as Record<string, z.ZodType>)[name];
  if (schema === undefined) return "is not a setting of the gateway";
  const result = schema.safeParse(value);
  return result.success ? undefined : (result.error.issues[0]?.message ?? "is invalid");
}
