import { z } from "zod";

// The edge settings that come from stack config (`wagate:rateLimit`, `wagate:waf`, `wagate:acmeServer`).
// Shared by the renderers, the Pulumi config schema and the local stack, so one schema decides what is valid.

/** A `limit_req` zone: sustained rate and the burst allowed on top of it. */
const limitSchema = z
  .object({
    rate: z.number().int().min(1).max(10_000),
    burst: z.number().int().min(0).max(10_000),
  })
  .strict();

export const rateLimitSchema = z
  .object({
    /** Every request, per client IP, in requests per second. */
    perIp: limitSchema.default({ rate: 10, burst: 20 }),
    /** OTP routes, per client IP, in requests per minute: codes cost money and invite brute force. */
    otpPerMinute: limitSchema.default({ rate: 10, burst: 5 }),
    /** Per bearer token, in requests per second, so one leaked token cannot use every IP's budget. */
    perToken: limitSchema.default({ rate: 50, burst: 100 }),
    /**
     * Meta's webhook deliveries, per source IP, in requests per second. Meta sends from a few addresses and in
     * bursts; a 429 makes it retry later, so this is generous rather than strict.
     */
    webhookPerIp: limitSchema.default({ rate: 100, burst: 200 }),
    /** Concurrent connections per client IP. */
    connectionsPerIp: z.number().int().min(1).max(10_000).default(50),
  })
  .strict();
export type RateLimit = z.infer<typeof rateLimitSchema>;

/**
 * The operator's backends (stack config `wagate:trustedCidrs`, validated in infra/config.ts): never banned by
 * fail2ban and exempt from the per-IP request limits (one backend sends for many users); the per-token limits
 * still apply. IPv4 CIDR blocks only, as nginx `geo` and fail2ban `ignoreip` read them.
 */
export const trustedCidrsSchema = z
  .array(z.string().regex(/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/, "an IPv4 CIDR block such as 198.51.100.0/28"))
  .max(100);

export const wafSchema = z
  .object({
    enabled: z.boolean().default(true),
    paranoiaLevel: z.number().int().min(1).max(4).default(1),
    inboundAnomalyThreshold: z.number().int().min(1).max(100).default(5),
    outboundAnomalyThreshold: z.number().int().min(1).max(100).default(4),
  })
  .strict();
export type Waf = z.infer<typeof wafSchema>;

export const ACME_DIRECTORIES = {
  production: "https://acme-v02.api.letsencrypt.org/directory",
  staging: "https://acme-staging-v02.api.letsencrypt.org/directory",
} as const;

/** `production`, `staging` (Let's Encrypt's) or the directory URL of any ACME server, such as a local Pebble. */
export const acmeServerSchema = z.union([z.enum(["production", "staging"]), z.url({ protocol: /^https$/ })]);
export type AcmeServer = z.infer<typeof acmeServerSchema>;

export function acmeDirectoryUrl(server: AcmeServer): string {
  return server === "production" || server === "staging" ? ACME_DIRECTORIES[server] : server;
}
