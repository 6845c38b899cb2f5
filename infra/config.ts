import * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import { MAX_DATA_VOLUME_GB, MAX_SNAPSHOT_RETENTION, MIN_DATA_VOLUME_GB } from "./plan/data-volume.js";
import { parseGatewaySettings } from "./plan/gateway-settings.js";
import type { GatewayEnv } from "./render/gateway-env.js";
import {
  type AcmeServer,
  acmeServerSchema,
  type RateLimit,
  rateLimitSchema,
  type Waf,
  wafSchema,
} from "./render/settings.js";

// The stack's configuration, validated as a whole before any resource is made. Pulumi hands the program every
// value as a string (structured values from Pulumi.<stack>.yaml arrive as JSON), so the pure `parseConfig` takes
// exactly that, plus the set of keys Pulumi holds encrypted, and either returns a typed config or throws one
// error with a line per bad key, each naming it (`wagate:adminCidrs: …`). Secret values never appear in a
// message, and they leave this module only wrapped as Pulumi secrets.

export const PROJECT = "wagate";

/** Keys whose value must be stored encrypted (`pulumi config set --secret`). */
export const SECRET_KEYS = [
  "apiSecret",
  "apiSecretPrevious",
  "whatsappAccessToken",
  "whatsappAppSecret",
  "whatsappVerifyToken",
] as const;
export type SecretKey = (typeof SECRET_KEYS)[number];

/** The WhatsApp Cloud API settings: all present (transport `cloud`) or all absent (transport `sandbox`). */
const WHATSAPP_KEYS = [
  "whatsappAccessToken",
  "whatsappAppSecret",
  "whatsappVerifyToken",
  "whatsappPhoneNumberId",
] as const;

const json = <T extends z.ZodType>(schema: T) =>
  z
    .string()
    .transform((text, ctx) => {
      try {
        return JSON.parse(text) as unknown;
      } catch {
        ctx.addIssue({ code: "custom", message: "is not valid YAML/JSON" });
        return z.NEVER;
      }
    })
    .pipe(schema);

const booleanText = z
  .enum(["true", "false"], { error: "must be true or false" })
  .transform((v) => v === "true");

/** A CIDR block in canonical form (host bits zero), IPv4 or IPv6. */
export interface Cidr {
  family: 4 | 6;
  bits: bigint;
  prefix: number;
}

export function parseCidr(text: string): Cidr | undefined {
  const match = /^([0-9a-fA-F:.]+)\/(\d{1,3})$/.exec(text);
  if (!match) return undefined;
  const [, address = "", prefixText = ""] = match;
  const prefix = Number(prefixText);
  const v4 = parseIpv4(address);
  if (v4 !== undefined) return prefix <= 32 ? { family: 4, bits: v4, prefix } : undefined;
  const v6 = parseIpv6(address);
  if (v6 !== undefined) return prefix <= 128 ? { family: 6, bits: v6, prefix } : undefined;
  return undefined;
}

function parseIpv4(text: string): bigint | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  let value = 0n;
  for (const part of parts) {
    if (!/^(0|[1-9]\d{0,2})$/.test(part) || Number(part) > 255) return undefined;
    value = (value << 8n) | BigInt(part);
  }
  return value;
}

function parseIpv6(text: string): bigint | undefined {
  if (!/^[0-9a-fA-F:]+$/.test(text)) return undefined;
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const groups = (s: string | undefined) => (s ? s.split(":") : []);
  const head = groups(halves[0]);
  const tail = groups(halves[1]);
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  let value = 0n;
  for (const group of [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill("0"), ...tail]) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(group)) return undefined;
    value = (value << 16n) | BigInt(`0x${group}`);
  }
  return value;
}

function hostBitsSet(cidr: Cidr): boolean {
  const width = cidr.family === 4 ? 32 : 128;
  const hostMask = (1n << BigInt(width - cidr.prefix)) - 1n;
  return (cidr.bits & hostMask) !== 0n;
}

/**
 * Narrowest prefix accepted for an admin range: SSH open to a /7 or wider is SSH open to a large part of the
 * internet, and two halves (`0.0.0.0/1` + `128.0.0.0/1`) are the whole of it.
 */
export const MIN_ADMIN_PREFIX = 8;

/**
 * A CIDR block of the stack config: IPv4 (the VPC is IPv4-only), the network address, no wider than
 * /MIN_ADMIN_PREFIX. `reach` names what the range is for, in the messages.
 */
const cidrSchema = (reach: string, wholeInternet: string) =>
  z.string().superRefine((text, ctx) => {
    if (text === "0.0.0.0/0" || text === "::/0") {
      ctx.addIssue({ code: "custom", message: `${text} is the whole internet; ${wholeInternet}` });
      return;
    }
    const cidr = parseCidr(text);
    if (!cidr) {
      ctx.addIssue({
        code: "custom",
        message: `${JSON.stringify(text)} is not a CIDR block such as 203.0.113.0/24`,
      });
      return;
    }
    if (cidr.family === 6) {
      ctx.addIssue({
        code: "custom",
        message: `${text}: the VPC is IPv4-only, so an IPv6 range can never reach ${reach}`,
      });
      return;
    }
    if (cidr.prefix < MIN_ADMIN_PREFIX) {
      ctx.addIssue({
        code: "custom",
        message: `${text} is too wide (prefix shorter than /${MIN_ADMIN_PREFIX})`,
      });
      return;
    }
    if (hostBitsSet(cidr)) {
      ctx.addIssue({
        code: "custom",
        message: `${text} has host bits set; write the network address of the block`,
      });
    }
  });

const adminCidrSchema = cidrSchema("SSH", "SSH must be limited to your own ranges");
/** The operator's backends: never banned by fail2ban, no per-IP limits; per-token limits still apply. */
const trustedCidrSchema = cidrSchema(
  "the edge",
  "trusting it would exempt every client from bans and per-IP limits",
);

/** A secret value that will end up in an env file line: printable, no whitespace, never echoed. */
const secretText = (what: string, min: number) =>
  z
    .string()
    .min(min, { error: `must be at least ${min} characters (${what})` })
    .regex(/^[\x21-\x7e]+$/, { error: "must be printable ASCII without spaces or newlines" });

const hexSecret = z
  .string({
    error: "is required: make one with `npm run secret` and set it with pulumi config set --secret",
  })
  .regex(/^[0-9a-fA-F]+$/, { error: "must be hexadecimal (make one with `npm run secret`)" })
  .refine((s) => s.length % 2 === 0 && s.length >= 64, {
    error: "must be at least 32 bytes (64 hex characters); make one with `npm run secret`",
  });

const settingsSchema = z.object({
  domain: z
    .string({ error: "is required (the public DNS name of the gateway, e.g. api.example.com)" })
    .regex(/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/, {
      error: "must be a lowercase DNS name such as api.example.com",
    }),
  acmeEmail: z.email({ error: "is required: a valid email address for Let's Encrypt notices" }),
  acmeServer: acmeServerSchema.default("staging"),
  adminCidrs: json(
    z
      .array(adminCidrSchema, { error: 'must be a list of CIDR blocks, e.g. ["203.0.113.0/24"]' })
      .min(1, { error: "must list at least one CIDR block allowed to reach SSH" }),
  ),
  trustedCidrs: json(
    z.array(trustedCidrSchema, {
      error: 'must be a list of CIDR blocks of your backends, e.g. ["198.51.100.0/28"]',
    }),
  ).prefault("[]"),
  instanceType: z
    .string({ error: "is required (e.g. t4g.small)" })
    .regex(/^[a-z][a-z0-9-]*\.[a-z0-9]+$/, { error: "must be an EC2 instance type such as t4g.small" }),
  amiId: z
    .string({
      error: "is required: pin a Debian 13 AMI id so that a new image never silently replaces the VM",
    })
    .regex(/^ami-([0-9a-f]{8}|[0-9a-f]{17})$/, { error: "must be an AMI id such as ami-0123456789abcdef0" }),
  rateLimit: json(rateLimitSchema).prefault("{}"),
  waf: json(wafSchema).prefault("{}"),
  hostedZoneId: z
    .string()
    .regex(/^Z[A-Z0-9]{1,31}$/, { error: "must be a Route 53 hosted zone id such as Z0123456789ABCDEFGHIJ" })
    .optional(),
  gatewayImage: z
    .string()
    .regex(
      /^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(\/[a-z0-9]+([._-][a-z0-9]+)*)*(:[\w][\w.-]{0,127})?@sha256:[0-9a-f]{64}$/,
      {
        error: "must be pinned by digest (registry/name@sha256:<64 hex>); a tag alone can change under you",
      },
    )
    .optional(),
  detailedMonitoring: booleanText.default(false),
  backupRetentionDays: json(
    z.number().int().min(1, { error: "must be at least 1" }).max(3650, { error: "must be at most 3650" }),
  ).prefault("30"),
  provision: booleanText.default(true),
  dataVolumeSizeGb: json(
    z
      .number({ error: "must be a whole number of GB" })
      .int({ error: "must be a whole number of GB" })
      .min(MIN_DATA_VOLUME_GB, { error: `must be at least ${MIN_DATA_VOLUME_GB} (GB)` })
      .max(MAX_DATA_VOLUME_GB, { error: `must be at most ${MAX_DATA_VOLUME_GB} (GB, gp3's largest)` }),
  ).prefault("10"),
  snapshotRetention: json(
    z
      .number({ error: "must be a whole number of hourly snapshots" })
      .int({ error: "must be a whole number of hourly snapshots" })
      .min(1, { error: "must be at least 1: 0 would keep no snapshot and lose the hourly recovery point" })
      .max(MAX_SNAPSHOT_RETENTION, {
        error: `must be at most ${MAX_SNAPSHOT_RETENTION} (Data Lifecycle Manager's limit)`,
      }),
  ).prefault("24"),
  snapshotCopyRegion: z
    .string()
    .regex(/^[a-z]{2}(-[a-z]+)+-\d$/, { error: "must be an AWS region such as us-west-2" })
    .optional(),
  dataSnapshotId: z
    .string()
    .regex(/^snap-([0-9a-f]{8}|[0-9a-f]{17})$/, {
      error: "must be an EBS snapshot id such as snap-0123456789abcdef0",
    })
    .optional(),
  // The gateway's own settings by variable name, checked by plan/gateway-settings.ts with the gateway's schema.
  gateway: z.string().optional(),
  whatsappPhoneNumberId: z
    .string()
    .regex(/^[0-9]{1,32}$/, { error: "must be the numeric phone number id from Meta" })
    .optional(),
  apiSecret: hexSecret,
  // Set for the one deploy that rotates apiSecret (README: API_SECRET rotation), then removed.
  apiSecretPrevious: hexSecret.optional(),
  whatsappAccessToken: secretText("a Meta system-user access token", 20).optional(),
  whatsappAppSecret: secretText("the Meta app secret", 16).optional(),
  whatsappVerifyToken: secretText("a random string of your choice", 16).optional(),
});

const KNOWN_KEYS = new Set(Object.keys(settingsSchema.shape));

/** The stack's settings. Secrets are Pulumi secrets; everything else is plain. */
export interface WagateConfig {
  stack: string;
  awsRegion: string;
  domain: string;
  acmeEmail: string;
  acmeServer: AcmeServer;
  adminCidrs: string[];
  /** The operator's backends: never banned by fail2ban, exempt from per-IP limits, still limited per token. */
  trustedCidrs: string[];
  instanceType: string;
  amiId: string;
  rateLimit: RateLimit;
  waf: Waf;
  hostedZoneId: string | undefined;
  gatewayImage: string | undefined;
  detailedMonitoring: boolean;
  backupRetentionDays: number;
  /** Size of the data volume (GB); it can grow, never shrink. */
  dataVolumeSizeGb: number;
  /** How many hourly snapshots of the data volume are kept. */
  snapshotRetention: number;
  /** Another region each hourly snapshot is copied to (the copy a lost region leaves), if any. */
  snapshotCopyRegion: string | undefined;
  /** Create (or re-create) the data volume from this snapshot: the restore path. */
  dataSnapshotId: string | undefined;
  /** false: create the infrastructure only (to point DNS at the address before the certificate is requested). */
  provision: boolean;
  whatsapp: WhatsappConfig | undefined;
  /** `wagate:gateway`: the gateway's plain settings (variable → value), validated by the gateway's schema. */
  gatewaySettings: Record<string, string>;
  apiSecret: pulumi.Output<string>;
  /** The secret being rotated out: what it sealed is moved under apiSecret when the gateway starts. */
  apiSecretPrevious: pulumi.Output<string> | undefined;
}

export interface WhatsappConfig {
  phoneNumberId: string;
  accessToken: pulumi.Output<string>;
  appSecret: pulumi.Output<string>;
  verifyToken: pulumi.Output<string>;
}

export class ConfigError extends pulumi.RunError {
  constructor(readonly problems: string[]) {
    super(`invalid stack configuration:\n${problems.join("\n")}`);
    this.name = "ConfigError";
  }
}

const AWS_REGION = /^[a-z]{2}(-[a-z]+)+-\d$/;

/**
 * Validates the raw configuration of one stack. `raw` maps project-qualified keys (`wagate:domain`,
 * `aws:region`) to the strings Pulumi provides; `secretKeys` are the keys Pulumi stores encrypted.
 */
export function parseConfig(
  raw: Readonly<Record<string, string>>,
  secretKeys: ReadonlySet<string>,
  stack: string,
): WagateConfig {
  const problems: string[] = [];
  const values: Record<string, string> = {};
  for (const [fullKey, value] of Object.entries(raw)) {
    if (!fullKey.startsWith(`${PROJECT}:`)) continue;
    const key = fullKey.slice(PROJECT.length + 1);
    if (!KNOWN_KEYS.has(key)) problems.push(`${fullKey}: unknown setting (a typo?)`);
    else values[key] = value;
  }
  for (const key of SECRET_KEYS) {
    if (values[key] !== undefined && !secretKeys.has(`${PROJECT}:${key}`)) {
      problems.push(
        `${PROJECT}:${key}: is stored in plain text; remove it from Pulumi.${stack}.yaml and set it with ` +
          `\`pulumi config set --secret ${PROJECT}:${key}\``,
      );
    }
  }
  const present = WHATSAPP_KEYS.filter((k) => values[k] !== undefined);
  if (present.length > 0 && present.length < WHATSAPP_KEYS.length) {
    for (const key of WHATSAPP_KEYS.filter((k) => values[k] === undefined)) {
      problems.push(
        `${PROJECT}:${key}: is required when ${present.map((k) => `${PROJECT}:${k}`).join(", ")} is set`,
      );
    }
  }
  const awsRegion = raw["aws:region"];
  if (awsRegion === undefined)
    problems.push("aws:region: is required (e.g. `pulumi config set aws:region eu-central-1`)");
  else if (!AWS_REGION.test(awsRegion))
    problems.push(`aws:region: ${JSON.stringify(awsRegion)} is not an AWS region`);

  const gatewaySettings = parseGatewaySettings(values.gateway);
  problems.push(...gatewaySettings.problems);

  const parsed = settingsSchema.safeParse(values, { reportInput: false });
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const [key, ...rest] = issue.path.map(String);
      const where = rest.length > 0 ? `${rest.join(".")}: ` : "";
      problems.push(`${PROJECT}:${key}: ${where}${issue.message}`);
    }
  }
  if (
    parsed.success &&
    parsed.data.apiSecretPrevious !== undefined &&
    parsed.data.apiSecretPrevious.toLowerCase() === parsed.data.apiSecret.toLowerCase()
  )
    problems.push(`${PROJECT}:apiSecretPrevious: must differ from ${PROJECT}:apiSecret`);
  if (
    parsed.success &&
    parsed.data.snapshotCopyRegion !== undefined &&
    parsed.data.snapshotCopyRegion === awsRegion
  )
    problems.push(`${PROJECT}:snapshotCopyRegion: must be another region than aws:region (${awsRegion})`);
  if (problems.length > 0 || !parsed.success || awsRegion === undefined) throw new ConfigError(problems);

  const s = parsed.data;
  const whatsapp =
    s.whatsappAccessToken !== undefined &&
    s.whatsappAppSecret !== undefined &&
    s.whatsappVerifyToken !== undefined &&
    s.whatsappPhoneNumberId !== undefined
      ? {
          phoneNumberId: s.whatsappPhoneNumberId,
          accessToken: pulumi.secret(s.whatsappAccessToken),
          appSecret: pulumi.secret(s.whatsappAppSecret),
          verifyToken: pulumi.secret(s.whatsappVerifyToken),
        }
      : undefined;
  return {
    stack,
    awsRegion,
    domain: s.domain,
    acmeEmail: s.acmeEmail,
    acmeServer: s.acmeServer,
    adminCidrs: s.adminCidrs,
    trustedCidrs: s.trustedCidrs,
    instanceType: s.instanceType,
    amiId: s.amiId,
    rateLimit: s.rateLimit,
    waf: s.waf,
    hostedZoneId: s.hostedZoneId,
    gatewayImage: s.gatewayImage,
    detailedMonitoring: s.detailedMonitoring,
    backupRetentionDays: s.backupRetentionDays,
    dataVolumeSizeGb: s.dataVolumeSizeGb,
    snapshotRetention: s.snapshotRetention,
    snapshotCopyRegion: s.snapshotCopyRegion,
    dataSnapshotId: s.dataSnapshotId,
    provision: s.provision,
    whatsapp,
    gatewaySettings: gatewaySettings.settings,
    apiSecret: pulumi.secret(s.apiSecret),
    apiSecretPrevious: s.apiSecretPrevious === undefined ? undefined : pulumi.secret(s.apiSecretPrevious),
  };
}

/**
 * Which config keys Pulumi holds encrypted. The SDK records them (`PULUMI_CONFIG_SECRET_KEYS` from the CLI,
 * the `secretKeys` of `setAllConfig` in tests) behind `runtime.isConfigSecret`, which its typings mark
 * internal; without it no plain-text secret could be refused, so its absence stops the program.
 */
function configIsSecret(): (key: string) => boolean {
  const probe = (pulumi.runtime as unknown as { isConfigSecret?: (key: string) => boolean }).isConfigSecret;
  if (typeof probe !== "function") {
    throw new pulumi.RunError(
      "this @pulumi/pulumi does not expose runtime.isConfigSecret; cannot tell secret config from plain text",
    );
  }
  return probe;
}

/** Reads and validates the current stack's configuration. */
export function loadConfig(): WagateConfig {
  const raw = pulumi.runtime.allConfig();
  const isSecret = configIsSecret();
  const secretKeys = new Set(Object.keys(raw).filter((k) => isSecret(k)));
  return parseConfig(raw, secretKeys, pulumi.getStack());
}

/** The gateway's environment (render/gateway-env.ts) from the stack's secrets: a secret itself. */
export function gatewayEnvOf(config: WagateConfig): pulumi.Output<GatewayEnv> {
  const w = config.whatsapp;
  return pulumi.secret(
    pulumi
      .all([config.apiSecret, config.apiSecretPrevious, w?.accessToken, w?.appSecret, w?.verifyToken])
      .apply(
        ([apiSecret, apiSecretPrevious, accessToken, appSecret, verifyToken]): GatewayEnv => ({
          apiSecret,
          ...(apiSecretPrevious === undefined ? {} : { apiSecretPrevious }),
          settings: config.gatewaySettings,
          whatsapp:
            w && accessToken && appSecret && verifyToken
              ? { accessToken, appSecret, verifyToken, phoneNumberId: w.phoneNumberId }
              : undefined,
        }),
      ),
  );
}
