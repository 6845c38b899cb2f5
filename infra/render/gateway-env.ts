import { z } from "zod";

// The gateway's environment file on the VM: the only rendered file that holds secrets. Pulumi copies it as a
// secret to GATEWAY_ENV_FILE (root, 0600) — it is never part of the host bundle, a command line or a log — and
// podman reads it with `--env-file` when the systemd unit starts the container.
//
// What the container's own layout decides (HOST, PORT, DATABASE_PATH, SANDBOX_OUTBOX_PATH) is set by the
// systemd unit (systemd.ts), not here, so the two can never disagree.

const hex32 = z
  .string()
  .regex(/^[0-9a-f]+$/i, "must be hexadecimal")
  .refine((s) => s.length % 2 === 0 && s.length >= 64, "must be at least 32 bytes (64 hex characters)");

/** One line of an env file: podman takes everything after `=` literally, so a newline would end the value. */
const envValue = z
  .string()
  .min(1)
  .refine((s) => !/[\r\n\0]/.test(s), "must be one line");

const whatsappCloudSchema = z
  .object({
    accessToken: envValue,
    phoneNumberId: z.string().regex(/^[0-9]{1,32}$/, "must be the numeric phone number id"),
    appSecret: envValue,
    verifyToken: envValue,
  })
  .strict();

export const gatewayEnvSchema = z
  .object({
    apiSecret: hex32,
    /** Only while rotating apiSecret: what the previous secret sealed keeps opening, and is moved. */
    apiSecretPrevious: hex32.optional(),
    jwtIssuer: envValue.default("wagate"),
    jwtAudience: envValue.default("wagate"),
    /** Absent: the sandbox transport (messages recorded on the data volume, nothing sent). */
    whatsapp: whatsappCloudSchema.optional(),
    graphApiBaseUrl: z.url({ protocol: /^https$/ }).optional(),
    /**
     * `wagate:gateway`: plain settings by variable name, already checked with the gateway's own schema
     * (infra/plan/gateway-settings.ts). They may replace JWT_ISSUER, JWT_AUDIENCE and GRAPH_API_BASE_URL, never
     * a line the fields above write.
     */
    settings: z.record(z.string().regex(/^[A-Z][A-Z0-9_]*$/, "must be a variable name"), envValue).optional(),
  })
  .strict();

/** Lines a setting may replace (their fields only carry defaults). */
const OVERRIDABLE = new Set(["JWT_ISSUER", "JWT_AUDIENCE", "GRAPH_API_BASE_URL"]);
export type GatewayEnv = z.input<typeof gatewayEnvSchema>;

/** `KEY=value` lines for `podman run --env-file`; throws naming the field (never its value) when invalid. */
export function renderGatewayEnvFile(env: GatewayEnv): string {
  const parsed = gatewayEnvSchema.safeParse(env);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`gateway env: ${issue?.path.join(".") || "value"} ${issue?.message ?? "is invalid"}`);
  }
  const e = parsed.data;
  const vars: [string, string | undefined][] = [
    ["API_SECRET", e.apiSecret],
    ["API_SECRET_PREVIOUS", e.apiSecretPrevious],
    ["JWT_ISSUER", e.jwtIssuer],
    ["JWT_AUDIENCE", e.jwtAudience],
    ["WHATSAPP_TRANSPORT", e.whatsapp ? "cloud" : "sandbox"],
    ["WHATSAPP_ACCESS_TOKEN", e.whatsapp?.accessToken],
    ["WHATSAPP_PHONE_NUMBER_ID", e.whatsapp?.phoneNumberId],
    ["WHATSAPP_APP_SECRET", e.whatsapp?.appSecret],
    ["WHATSAPP_VERIFY_TOKEN", e.whatsapp?.verifyToken],
    ["GRAPH_API_BASE_URL", e.graphApiBaseUrl],
  ];
  const settings = Object.entries(e.settings ?? {}).sort(([a], [b]) => a.localeCompare(b));
  for (const [name] of settings) {
    if (vars.some(([k]) => k === name) && !OVERRIDABLE.has(name))
      throw new Error(`gateway env: settings.${name} is written from its own field, not from settings`);
  }
  const fixed = vars.filter(([k]) => !settings.some(([name]) => name === k));
  return `${[...fixed, ...settings]
    .filter((v): v is [string, string] => v[1] !== undefined)
    .map(([k, v]) => `${k}=${v}`)
    .join("\n")}\n`;
}
