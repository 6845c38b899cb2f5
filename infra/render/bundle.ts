import { posix } from "node:path";
import { z } from "zod";
import { ADMIN_CLI_PATH, renderAdminCli } from "./admin-cli.js";
import { certbotIssueArgs, DEBIAN_CERTBOT_DIRS, renderCertbotCliIni, renderDeployHook } from "./certbot.js";
import {
  DATA_LABEL,
  DATA_MOUNT_DIR,
  dataDeviceSchema,
  KEPT_DIRECTORIES,
  renderRequiresDataDropIn,
} from "./data-volume.js";
import { renderFail2ban } from "./fail2ban.js";
import { CERT_NAME, layoutDirectories, vmLayout } from "./layout.js";
import { ACCESS_LOG_LOGROTATE_FILE, renderAccessLogRotation } from "./logrotate.js";
import { renderNginx } from "./nginx.js";
import { NGINX_ALLOCATOR_PACKAGE, renderNginxAllocatorDropIn } from "./nginx-allocator.js";
import { PROVISION_STEPS, type ProvisionStepName, provisionScript, renderVars } from "./provision.js";
import {
  type AcmeServer,
  acmeDirectoryUrl,
  acmeServerSchema,
  type RateLimit,
  rateLimitSchema,
  trustedCidrsSchema,
  type Waf,
  wafSchema,
} from "./settings.js";
import {
  BACKUP_DIR,
  BACKUP_ENV_FILE,
  BACKUP_SCRIPT,
  BACKUP_SERVICE,
  BACKUP_TIMER,
  GATEWAY_DATA_DIR,
  GATEWAY_UID,
  GATEWAY_UNIT,
  GATEWAY_USER,
  LOCAL_GATEWAY_IMAGE,
  type PodmanOptions,
  podmanSchema,
  renderBackupEnv,
  renderBackupScript,
  renderBackupService,
  renderBackupTimer,
  renderCertbotCaDropIn,
  renderContainersConf,
  renderGatewayUnit,
} from "./systemd.js";

// The host bundle: every file the VM needs, rendered from the stack config, plus the ordered steps that apply
// it. "One list of steps, two executors": the Pulumi components run each step as a `remote.Command` whose
// triggers are the hash of the bundle files it `uses`; the box test (a Debian 13 under systemd-nspawn) runs the
// same commands over SSH. Contract for both executors:
//
// (infra/plan/provision.ts turns this into one ordered list of remote actions that both executors follow.)
// 1. Copy `files` to `remoteDir` (keys are paths relative to it). The steps only read it.
// 2. Write the gateway's env file (renderGatewayEnvFile in gateway-env.ts, the secrets) to GATEWAY_ENV_FILE,
//    root 0600, from stdin, before the step named GATEWAY_STEP; re-run that step when the env file changes. Write
//    the edge's token key (renderEdgeIdentityKey in edge-identity-key.ts, derived from the env file) the same
//    way to EDGE_IDENTITY_KEY_FILE before EDGE_STEP; re-run that step (nginx reloads) when the key changes.
// 3. When no pinned `gatewayImage` is given, copy the build context (the repository's `package.json`,
//    `package-lock.json` and `gateway/`) to GATEWAY_BUILD_CONTEXT before GATEWAY_STEP; re-run it when they change.
// 4. Run `steps` in order as root (through `sudo -n` for Debian's `admin`); stop at the first failure. Every step is
//    idempotent and prints `changed …` for what it changed; a second run with the same bundle changes nothing.

/** Where the bundle is copied on the host. */
export const REMOTE_BUNDLE_DIR = "/opt/wagate/bundle";
/** The gateway's secrets (env file, root 0600), copied separately from the bundle. */
export const GATEWAY_ENV_FILE = "/etc/wagate/gateway.env";
/**
 * The edge's token key (js_preload_object of renderNginx's `identity`), root 0600: nginx's master reads it as
 * root at configuration load; copied separately from the bundle, like the env file.
 */
export const EDGE_IDENTITY_KEY_FILE = "/etc/wagate/edge-identity-key.json";
/** The step that needs EDGE_IDENTITY_KEY_FILE in place (and reloads nginx when it changes). */
export const EDGE_STEP: ProvisionStepName = "nginx";
/** Build context for `podman build` on the host when no pinned image is given. */
export const GATEWAY_BUILD_CONTEXT = "/opt/wagate/src";
/** Dockerfile, relative to the build context. */
export const GATEWAY_DOCKERFILE = "gateway/Dockerfile";
/** The step that needs GATEWAY_ENV_FILE (and the build context) in place. */
export const GATEWAY_STEP: ProvisionStepName = "gateway";
/** Where a private ACME server's CA is installed (test boxes with Pebble only). */
export const ACME_CA_FILE = "/etc/wagate/acme-ca.pem";

/** nginx.service's drop-in that preloads its allocator (bundle path; provision.sh's nginx step installs it). */
export const NGINX_ALLOCATOR_DROP_IN = "systemd/nginx.service.d/wagate-allocator.conf";

/** Debian packages the host needs (the same as the edge's integration tests run, plus the host's tools). */
export const HOST_PACKAGES = [
  "nginx",
  "libnginx-mod-http-modsecurity",
  // njs: the edge's JSON answers to WAF denials and its token check (infra/render/edge-js.ts).
  "libnginx-mod-http-js",
  "modsecurity-crs",
  "certbot",
  "fail2ban",
  "python3-systemd",
  "nftables",
  "podman",
  // podman's network plugins publish ports with iptables (nft backend); Debian's cloud images lack the command.
  "iptables",
  "sqlite3",
  "awscli",
  "curl",
  // Rotates the JSON access log (logrotate.ts); Debian's cloud images have it, minimal systems may not.
  "logrotate",
  "openssl",
  "ca-certificates",
  // mkfs.ext4, resize2fs and dumpe2fs for the data volume (Debian's cloud images have it, minimal systems may not).
  "e2fsprogs",
  // nginx's allocator (infra/render/nginx-allocator.ts).
  NGINX_ALLOCATOR_PACKAGE,
] as const;

export interface HostBundleInput {
  stack: string;
  domain: string;
  acmeEmail: string;
  acmeServer: AcmeServer;
  rateLimit: RateLimit;
  waf: Waf;
  /** `wagate:adminCidrs`: the only clients the edge lets reach the routes that link WhatsApp Web numbers. */
  adminCidrs?: string[];
  /** `wagate:trustedCidrs`: the operator's backends (never banned, no per-IP limits). */
  trustedCidrs?: readonly string[];
  /** Pinned by digest (`…@sha256:…`); absent = `podman build` on the host from GATEWAY_BUILD_CONTEXT. */
  gatewayImage?: string;
  /** S3 bucket for the daily database backups; "" keeps local copies only (test boxes). */
  backupBucket: string;
  awsRegion: string;
  /**
   * Test boxes only: PEM of the CA that signs a private ACME server's HTTPS listener (Pebble). Installed at
   * ACME_CA_FILE and given to certbot as REQUESTS_CA_BUNDLE. Never set on AWS.
   */
  acmeCaPem?: string;
  /** Host-specific podman flags (test boxes under systemd-nspawn need some). */
  podman?: PodmanOptions;
  /**
   * Stable path of the data volume's block device (`/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol…`):
   * the `data` step mounts it and keeps there what must outlive the instance (data-volume.ts). Absent: the data
   * stays on the root volume.
   */
  dataDevice?: string;
}

export interface ProvisionStep {
  name: string;
  /** Run on the host as root; no secrets. */
  command: string;
  /** Bundle paths (keys of `files`) whose content determines when the step re-runs. */
  uses: string[];
}

export interface HostBundle {
  /** e.g. /opt/wagate/bundle */
  remoteDir: string;
  files: Record<string, string>;
  steps: ProvisionStep[];
}

const inputSchema = z
  .object({
    stack: z.string().regex(/^[A-Za-z0-9._-]{1,100}$/, "must be a Pulumi stack name"),
    domain: z.string().min(1),
    acmeEmail: z.email(),
    acmeServer: acmeServerSchema,
    rateLimit: rateLimitSchema,
    waf: wafSchema,
    adminCidrs: z.array(z.string()).optional(),
    trustedCidrs: trustedCidrsSchema.default([]),
    gatewayImage: z
      .string()
      .regex(
        /^[a-z0-9][a-z0-9._\-/:]*@sha256:[0-9a-f]{64}$/,
        "must be pinned by digest (name@sha256:<64 hex>)",
      )
      .optional(),
    backupBucket: z.string(),
    awsRegion: z.string(),
    acmeCaPem: z.string().includes("-----BEGIN CERTIFICATE-----").optional(),
    podman: podmanSchema.optional(),
    dataDevice: dataDeviceSchema.optional(),
  })
  .strict();

function fail(error: z.ZodError): never {
  const issue = error.issues[0];
  throw new Error(`host bundle: ${issue?.path.join(".") || "input"} ${issue?.message ?? "is invalid"}`);
}

export function renderHostBundle(input: HostBundleInput): HostBundle {
  const parsed = inputSchema.safeParse(input);
  if (!parsed.success) fail(parsed.error);
  const c = parsed.data;
  const layout = vmLayout();
  const podman = podmanSchema.parse(c.podman ?? {});
  const image = c.gatewayImage ?? LOCAL_GATEWAY_IMAGE;
  const files: Record<string, string> = {};

  for (const [name, content] of Object.entries(
    renderNginx({
      domain: c.domain,
      rateLimit: c.rateLimit,
      waf: c.waf,
      layout,
      ...(c.adminCidrs ? { adminCidrs: c.adminCidrs } : {}),
      trustedCidrs: c.trustedCidrs,
      // Identity first: the edge verifies tokens with the gateway's key, from a file outside the bundle.
      identity: { keyFile: EDGE_IDENTITY_KEY_FILE },
    }),
  )) {
    files[posix.join("nginx", name)] = content;
  }

  files["logrotate/access-log"] = renderAccessLogRotation({
    logDir: layout.logDir,
    user: layout.user ?? "www-data",
    reopenCommand: "invoke-rc.d nginx rotate",
  });

  files["certbot/cli.ini"] = renderCertbotCliIni({ email: c.acmeEmail, acmeServer: c.acmeServer });
  files["certbot/deploy-hook.sh"] = renderDeployHook({ reloadCommand: "systemctl reload nginx" });
  files["certbot/certonly.args"] = `${certbotIssueArgs({
    domain: c.domain,
    email: c.acmeEmail,
    acmeServer: acmeDirectoryUrl(c.acmeServer),
    webroot: layout.acmeWebroot,
    certName: CERT_NAME,
  }).join("\n")}\n`;
  if (c.acmeCaPem) {
    files["certbot/acme-ca.pem"] = c.acmeCaPem;
    files["systemd/certbot.service.d/wagate-acme-ca.conf"] = renderCertbotCaDropIn(ACME_CA_FILE);
  }

  files[NGINX_ALLOCATOR_DROP_IN] = renderNginxAllocatorDropIn();

  if (c.dataDevice) {
    const paths = KEPT_DIRECTORIES.map((d) => d.path);
    files["systemd/nginx.service.d/wagate-data.conf"] = renderRequiresDataDropIn(paths);
    files["systemd/certbot.service.d/wagate-data.conf"] = renderRequiresDataDropIn(paths);
  }

  for (const [name, content] of Object.entries(renderFail2ban(layout, { trustedCidrs: c.trustedCidrs })))
    files[posix.join("fail2ban", name)] = content;

  files[`systemd/${GATEWAY_UNIT}`] = renderGatewayUnit({
    image,
    upstream: layout.upstream,
    envFile: GATEWAY_ENV_FILE,
    podman,
  });
  if (!podman.keyring) files["containers/wagate.conf"] = renderContainersConf();
  files["admin/wagate"] = renderAdminCli({ image, envFile: GATEWAY_ENV_FILE, podman });
  files[`systemd/${BACKUP_SERVICE}`] = renderBackupService();
  files[`systemd/${BACKUP_TIMER}`] = renderBackupTimer();
  files["backup/backup.sh"] = renderBackupScript();
  files["backup/backup.env"] = renderBackupEnv({
    bucket: c.backupBucket,
    prefix: c.stack,
    region: c.awsRegion,
  });

  files["vars.sh"] = renderVars({
    BUNDLE_DIR: REMOTE_BUNDLE_DIR,
    PACKAGES: [...HOST_PACKAGES],
    DATA_DEVICE: c.dataDevice ?? "",
    DATA_MOUNT_DIR,
    DATA_LABEL,
    DATA_KEPT: KEPT_DIRECTORIES.map((d) => `${d.name}:${d.path}`),
    DOMAIN: c.domain,
    HTTPS_PORT: layout.httpsPort,
    NGINX_CONF_DIR: layout.confDir,
    EDGE_IDENTITY_KEY_FILE,
    NGINX_DIRS: layoutDirectories(layout),
    NGINX_USER: layout.user ?? "www-data",
    NGINX_MODSECURITY_TMP: posix.join(layout.tempDir, "modsecurity"),
    NGINX_LOGROTATE_FILE: ACCESS_LOG_LOGROTATE_FILE,
    LETSENCRYPT_DIR: DEBIAN_CERTBOT_DIRS.configDir,
    CERT_NAME,
    ACME_SERVER_URL: acmeDirectoryUrl(c.acmeServer),
    CERT_FILE: layout.certificate,
    KEY_FILE: layout.certificateKey,
    ACME_CA_FILE,
    GATEWAY_USER,
    GATEWAY_UID,
    GATEWAY_DATA_DIR,
    GATEWAY_UNIT,
    GATEWAY_ENV_FILE,
    GATEWAY_IMAGE: image,
    GATEWAY_BUILD_CONTEXT,
    GATEWAY_DOCKERFILE,
    GATEWAY_UPSTREAM: `${layout.upstream.host}:${layout.upstream.port}`,
    ADMIN_CLI: ADMIN_CLI_PATH,
    PODMAN_GLOBAL_ARGS: podman.globalArgs,
    PODMAN_BUILD_ARGS: podman.extraBuildArgs,
    BACKUP_DIR,
    BACKUP_SCRIPT,
    BACKUP_ENV_FILE,
    BACKUP_SERVICE,
    BACKUP_TIMER,
  });
  files["provision.sh"] = provisionScript();

  const all = Object.keys(files);
  const under = (...prefixes: string[]) => all.filter((f) => prefixes.some((p) => f.startsWith(p)));
  const common = ["provision.sh", "vars.sh"];
  const uses: Record<ProvisionStepName, string[]> = {
    packages: common,
    data: [
      ...common,
      ...under("systemd/nginx.service.d/wagate-data.conf", "systemd/certbot.service.d/wagate-data.conf"),
    ],
    nginx: [...common, ...under("nginx/", "logrotate/", NGINX_ALLOCATOR_DROP_IN)],
    certificate: [...common, ...under("certbot/", "systemd/certbot.service.d/wagate-acme-ca.conf")],
    fail2ban: [...common, ...under("fail2ban/")],
    gateway: [...common, `systemd/${GATEWAY_UNIT}`, ...under("containers/", "admin/")],
    backups: [...common, ...under("backup/", `systemd/${BACKUP_SERVICE}`, `systemd/${BACKUP_TIMER}`)],
    // Whatever changed, check the whole path again.
    health: all,
  };
  const steps = PROVISION_STEPS.map((name) => ({
    name,
    command: `bash ${REMOTE_BUNDLE_DIR}/provision.sh ${name}`,
    uses: [...new Set(uses[name])].sort(),
  }));
  return { remoteDir: REMOTE_BUNDLE_DIR, files, steps };
}
