import { z } from "zod";
import { CERT_NAME } from "./layout.js";
import { type AcmeServer, acmeDirectoryUrl, acmeServerSchema } from "./settings.js";

// certbot, configured the same way on the VM and in the local stack: webroot HTTP-01 issuance (nginx keeps
// running and serves the challenge), and a deploy hook in certbot's renewal-hooks directory that reloads nginx,
// so a renewal never restarts it. nginx reads `<configDir>/live/<CERT_NAME>/` directly (layout.ts). On the VM
// Debian's certbot.timer runs `certbot renew` twice a day.

export const certbotInputSchema = z
  .object({
    domain: z
      .string()
      .regex(/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/, "a DNS name"),
    email: z.email(),
    acmeServer: acmeServerSchema,
    /** Directory nginx serves `/.well-known/acme-challenge/` from. */
    webroot: z.string().startsWith("/"),
    /** certbot's lineage name (`live/<certName>/`), independent of the domain: CERT_NAME of layout.ts. */
    certName: z
      .string()
      .regex(/^[a-z0-9][a-z0-9._-]*$/)
      .default(CERT_NAME),
  })
  .strict();
export type CertbotInput = z.input<typeof certbotInputSchema>;

/** Where certbot keeps its state; the VM uses Debian's defaults, the local stack a directory of its own. */
export interface CertbotDirs {
  configDir: string;
  workDir: string;
  logsDir: string;
}

export const DEBIAN_CERTBOT_DIRS: CertbotDirs = {
  configDir: "/etc/letsencrypt",
  workDir: "/var/lib/letsencrypt",
  logsDir: "/var/log/letsencrypt",
};

export function certbotDirArgs(dirs: CertbotDirs): string[] {
  return ["--config-dir", dirs.configDir, "--work-dir", dirs.workDir, "--logs-dir", dirs.logsDir];
}

/** Arguments of `certbot` that obtain the first certificate (nothing secret: ACME accounts are made on the fly). */
export function certbotIssueArgs(input: CertbotInput): string[] {
  const c = certbotInputSchema.parse(input);
  return [
    "certonly",
    "--non-interactive",
    "--agree-tos",
    "--no-eff-email",
    "--email",
    c.email,
    "--server",
    acmeDirectoryUrl(c.acmeServer as AcmeServer),
    "--webroot",
    "--webroot-path",
    c.webroot,
    "--cert-name",
    c.certName,
    "--domain",
    c.domain,
    // ECDSA P-256: smaller handshakes; every client of Mozilla's "intermediate" profile supports it.
    "--key-type",
    "ecdsa",
    "--elliptic-curve",
    "secp256r1",
  ];
}

/**
 * `certbot renew` for one lineage. `force` is for tests and manual rotation. Without a terminal certbot sleeps
 * up to 8 minutes before renewing (to spread load on Let's Encrypt); `immediately` skips that, for tests only.
 */
export function certbotRenewArgs(
  certName: string,
  options: { force?: boolean; immediately?: boolean } = {},
): string[] {
  return [
    "renew",
    "--non-interactive",
    "--cert-name",
    certName,
    ...(options.force ? ["--force-renewal"] : []),
    ...(options.immediately ? ["--no-random-sleep-on-renew"] : []),
  ];
}

/** Where certbot keeps the current certificate of a lineage (symlinks into `archive/`). */
export function certbotLivePaths(
  dirs: CertbotDirs,
  certName = CERT_NAME,
): { fullchain: string; privkey: string } {
  return {
    fullchain: `${dirs.configDir}/live/${certName}/fullchain.pem`,
    privkey: `${dirs.configDir}/live/${certName}/privkey.pem`,
  };
}

/**
 * `/etc/letsencrypt/cli.ini` on the VM: defaults for any certbot command run there by hand, so a manual
 * `certbot renew` or `certbot certonly` talks to the configured ACME server, never to production by accident.
 */
export function renderCertbotCliIni(input: { email: string; acmeServer: AcmeServer }): string {
  const email = z.email().parse(input.email);
  const server = acmeDirectoryUrl(acmeServerSchema.parse(input.acmeServer));
  return [
    "# Rendered by wagate (infra/render/certbot.ts). Defaults for every certbot command on this host.",
    `server = ${server}`,
    `email = ${email}`,
    "agree-tos = true",
    "no-eff-email = true",
    "non-interactive = true",
    "key-type = ecdsa",
    "elliptic-curve = secp256r1",
    "",
  ].join("\n");
}

export interface DeployHookInput {
  /** Shell command that makes nginx re-read its certificate without dropping connections. */
  reloadCommand: string;
}

/**
 * The deploy hook, installed in `<configDir>/renewal-hooks/deploy/`: certbot runs every executable there after
 * each successful renewal (nginx reads the lineage's `live/` symlinks, so a reload is all it needs). A first
 * issuance does not run it: whoever runs `certonly` reloads nginx itself.
 */
export function renderDeployHook(input: DeployHookInput): string {
  return `#!/bin/bash
# Rendered by wagate (infra/render/certbot.ts): certbot runs this after each renewal.
set -euo pipefail
echo "wagate: certificate \${RENEWED_LINEAGE:-?} renewed, reloading nginx"
${input.reloadCommand}
`;
}

/** Where certbot looks for deploy hooks, under its config dir. */
export function deployHookPath(dirs: CertbotDirs, name = "wagate-reload-nginx"): string {
  return `${dirs.configDir}/renewal-hooks/deploy/${name}`;
}

/** Single-quotes a value for bash. */
export function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'"'"'`)}'`;
}
