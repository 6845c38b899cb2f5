import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  access,
  chmod,
  copyFile,
  lstat,
  mkdir,
  readFile,
  rm,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { SCOPES } from "../../gateway/src/auth/index.js";
import { mintToken } from "../../gateway/src/auth/tokens.js";
import type { CertbotDirs } from "../../infra/render/certbot.js";
import { IDENTITY_KEY_FILE, renderIdentityKey } from "../../infra/render/edge-js.js";
import { CERT_NAME, type EdgeLayout, localLayout } from "../../infra/render/layout.js";
import { renderNginx } from "../../infra/render/nginx.js";
import { NGINX_ALLOCATOR_PACKAGE } from "../../infra/render/nginx-allocator.js";
import { type RateLimit, rateLimitSchema, type Waf, wafSchema } from "../../infra/render/settings.js";
import { installDeployHook, type LocalCertbot, obtainCertificate, renewCertificate } from "./certbot.js";
import { nginxVersion, type RunningNginx, startNginx, writeSelfSignedCertificate } from "./nginx.js";
import { type Pebble, startPebble } from "./pebble.js";
import { freePort, type Started, startProcess, stopAll, waitForPort } from "./processes.js";

// The whole hardened stack on one machine, offline: Pebble (ACME) with its DNS helper, nginx rendered by the
// same renderers as the VM, a certificate obtained through certbot's HTTP-01 flow, and the gateway (sandbox
// transport, SQLite) behind it. `npm run local` is a thin CLI over `startLocalStack`; the integration tests
// and the smoke checks start it the same way.

const execFileAsync = promisify(execFile);

export const REPO_ROOT = resolve(import.meta.dirname, "../..");
export const LOCAL_DOMAIN = "gateway.test";
const JWT_ISSUER = "wagate";
const JWT_AUDIENCE = "wagate";

const DEMO_TOKEN_TTL_SECONDS = 24 * 3600;

/** Debian packages the local stack runs (binary or file that proves each is installed). */
export const LOCAL_PACKAGES: ReadonlyArray<{ pkg: string; path: string }> = [
  { pkg: "nginx", path: "/usr/sbin/nginx" },
  { pkg: "libnginx-mod-http-modsecurity", path: "/usr/lib/nginx/modules/ngx_http_modsecurity_module.so" },
  { pkg: "libnginx-mod-http-js", path: "/usr/lib/nginx/modules/ngx_http_js_module.so" },
  { pkg: "modsecurity-crs", path: "/usr/share/modsecurity-crs/rules" },
  { pkg: "certbot", path: "/usr/bin/certbot" },
  { pkg: "pebble", path: "/usr/bin/pebble" },
  { pkg: "openssl", path: "/usr/bin/openssl" },
  // nginx's allocator, preloaded as on the VM (infra/render/nginx-allocator.ts).
  {
    pkg: NGINX_ALLOCATOR_PACKAGE,
    path: `/usr/lib/${process.arch === "arm64" ? "aarch64" : "x86_64"}-linux-gnu/libjemalloc.so.2`,
  },
];

export async function missingPackages(): Promise<string[]> {
  const missing: string[] = [];
  for (const { pkg, path } of LOCAL_PACKAGES) {
    if (
      !(await access(path).then(
        () => true,
        () => false,
      ))
    )
      missing.push(pkg);
  }
  return missing;
}

/**
 * nginx started as root runs its workers as `nobody`: they must be able to walk down to the ACME webroot, or
 * every HTTP-01 validation fails with a 404. Returns the first directory above `dir` they cannot enter.
 */
async function untraversableParent(dir: string): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  let current = resolve(dir, "..");
  for (;;) {
    const info = await stat(current).catch(() => undefined);
    if (info && (info.mode & 0o001) === 0) return current;
    const parent = resolve(current, "..");
    if (parent === current) return undefined;
    current = parent;
  }
}

/**
 * `<repo>/.local`, unless nginx's workers cannot reach it (a checkout under /root, the usual case on a fresh
 * machine): then a directory under the system's temp dir, with `<repo>/.local` a link to it, so that
 * `npm run local` works from any checkout and `.local/stack.json` is where scripts look for it.
 */
async function defaultRootDir(log: (line: string) => void): Promise<string> {
  const inRepo = join(REPO_ROOT, ".local");
  const blocked = await untraversableParent(inRepo);
  if (!blocked) {
    if ((await lstat(inRepo).catch(() => undefined))?.isSymbolicLink()) await rm(inRepo);
    return inRepo;
  }
  const id = createHash("sha256").update(REPO_ROOT).digest("hex").slice(0, 12);
  const outside = join(tmpdir(), `wagate-local-${id}`);
  await rm(inRepo, { recursive: true, force: true });
  await symlink(outside, inRepo);
  log(`nginx's workers cannot enter ${blocked}: the stack lives in ${outside} (linked from ${inRepo})`);
  return outside;
}

export interface LocalStackOptions {
  /** Everything the stack writes (default `<repo>/.local`); wiped at start: the stack is throwaway. */
  rootDir?: string;
  httpPort?: number;
  httpsPort?: number;
  /** The gateway's loopback port (default: a free one). */
  gatewayPort?: number;
  rateLimit?: Partial<RateLimit>;
  waf?: Partial<Waf>;
  /**
   * Hosts (names or addresses) the gateway may deliver outbound webhooks to although they are loopback or
   * private: the gateway's WEBHOOK_ALLOWED_HOSTS, so a receiver on this machine can be tried. Default none.
   */
  webhookAllowedHosts?: string[];
  /** Allow http:// webhook URLs (WEBHOOK_ALLOW_HTTP), for a plain local receiver. Default false. */
  webhookAllowHttp?: boolean;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

/** The facts written to `<root>/stack.json` for people and scripts. */
export interface LocalStackFacts {
  baseUrl: string;
  httpUrl: string;
  /** curl `--resolve` value: the test domain pointed at 127.0.0.1. */
  resolve: string;
  /** The root that issued the served certificate (Pebble's, regenerated at each start). */
  caCert: string;
  /** A token with every scope, valid 24 h. */
  adminToken: string;
  sandboxOutbox: string;
  /** WHATSAPP_APP_SECRET of the local gateway, to sign Meta webhook calls. */
  appSecret: string;
  /** WHATSAPP_VERIFY_TOKEN of the local gateway: the `hub.verify_token` of Meta's subscription handshake. */
  verifyToken: string;
  /** Meta's callback URL on this stack (`GET` handshake, signed `POST` deliveries). */
  metaWebhookUrl: string;
  /** WEBHOOK_ALLOWED_HOSTS of the local gateway (empty: only public receivers). */
  webhookAllowedHosts: string[];
  /** WEBHOOK_ALLOW_HTTP of the local gateway. */
  webhookAllowHttp: boolean;
}

export interface LocalStack extends LocalStackFacts {
  domain: string;
  rootDir: string;
  layout: EdgeLayout;
  nginx: RunningNginx;
  pebble: Pebble;
  gateway: Started;
  certbot: LocalCertbot;
  /** Every process the stack started (nginx master, Pebble, its DNS helper, the gateway). */
  processes(): Started[];
  /** `certbot renew --force-renewal`: a new certificate, served after the deploy hook's reload. */
  renew(): Promise<void>;
  stop(): Promise<void>;
}

async function writeSecretFile(path: string, content: string): Promise<void> {
  await writeFile(path, content, { mode: 0o600 });
  await chmod(path, 0o600);
}

export async function startLocalStack(options: LocalStackOptions = {}): Promise<LocalStack> {
  const log = options.log ?? (() => undefined);
  const rootDir = options.rootDir ? resolve(options.rootDir) : await defaultRootDir(log);
  const missing = await missingPackages();
  if (missing.length) throw new Error(`missing Debian packages: apt-get install ${missing.join(" ")}`);

  const blocked = await untraversableParent(rootDir);
  if (blocked) {
    throw new Error(
      `nginx's workers (user nobody) cannot enter ${blocked}: use --dir under a traversable path (e.g. /tmp/wagate-local) or chmod o+x ${blocked}`,
    );
  }
  await rm(rootDir, { recursive: true, force: true });
  // nginx's workers (nobody, when started as root) must traverse it to serve the ACME webroot; the secrets in
  // it are files of their own with mode 0600.
  await mkdir(rootDir, { recursive: true });
  await chmod(rootDir, 0o755);
  const httpPort = options.httpPort ?? 8080;
  const httpsPort = options.httpsPort ?? 8443;
  const gatewayPort = options.gatewayPort ?? (await freePort());
  const layout = localLayout(join(rootDir, "edge"), {
    http: httpPort,
    https: httpsPort,
    upstream: gatewayPort,
  });
  const domain = LOCAL_DOMAIN;
  const started: Started[] = [];
  const stop = () => stopAll(started);

  try {
    // Secrets of this run only, never on a command line: files 0600 and the gateway's environment.
    const apiSecret = randomBytes(32).toString("hex");
    const appSecret = randomBytes(32).toString("hex");
    const verifyToken = randomBytes(16).toString("hex");
    await writeSecretFile(join(rootDir, "api-secret"), `${apiSecret}\n`);

    const gatewayDir = join(rootDir, "gateway");
    await mkdir(gatewayDir, { recursive: true, mode: 0o700 });
    const sandboxOutbox = join(gatewayDir, "sandbox-outbox.jsonl");
    log(`starting the gateway on 127.0.0.1:${gatewayPort} (sandbox transport)`);
    const gateway = startProcess(
      "gateway",
      process.execPath,
      ["--import", "tsx", join(REPO_ROOT, "gateway/src/main.ts")],
      {
        cwd: REPO_ROOT,
        logFile: join(gatewayDir, "gateway.log"),
        env: {
          PATH: process.env.PATH,
          NODE_ENV: "production",
          API_SECRET: apiSecret,
          HOST: "127.0.0.1",
          PORT: String(gatewayPort),
          DATABASE_PATH: join(gatewayDir, "wagate.db"),
          JWT_ISSUER,
          JWT_AUDIENCE,
          WHATSAPP_TRANSPORT: "sandbox",
          SANDBOX_OUTBOX_PATH: sandboxOutbox,
          WHATSAPP_APP_SECRET: appSecret,
          WHATSAPP_VERIFY_TOKEN: verifyToken,
          WEBHOOK_ALLOWED_HOSTS: (options.webhookAllowedHosts ?? []).join(","),
          WEBHOOK_ALLOW_HTTP: String(options.webhookAllowHttp ?? false),
        },
      },
    );
    started.push(gateway);

    log(`starting nginx on 127.0.0.1:${httpPort} and :${httpsPort} (self-signed until ACME)`);
    const files = renderNginx({
      domain,
      rateLimit: rateLimitSchema.parse(options.rateLimit ?? {}),
      waf: wafSchema.parse(options.waf ?? {}),
      layout,
      // The operator of a local stack sits on this machine: linking a web number is allowed from loopback.
      adminCidrs: ["127.0.0.0/8"],
      // The host's own nginx (Debian 12's 1.22 or 13's 1.26): the local stack needs no root and no Debian 13 root.
      nginxVersion: await nginxVersion(),
      // Identity first: the edge verifies tokens with the gateway's key (a 0600 file, like .local/api-secret).
      identity: { keyFile: join(layout.confDir, IDENTITY_KEY_FILE) },
    });
    files[IDENTITY_KEY_FILE] = renderIdentityKey({
      secret: apiSecret,
      issuer: JWT_ISSUER,
      audience: JWT_AUDIENCE,
      toleranceSeconds: 30,
    });
    await writeSelfSignedCertificate(layout, domain);
    const nginx = await startNginx({ layout, files });
    started.push(nginx);

    log("starting Pebble (ACME) and its DNS helper");
    const pebble = await startPebble({ dir: join(rootDir, "pebble"), httpPort });
    started.push(...pebble.processes);

    const dirs: CertbotDirs = {
      configDir: layout.letsencryptDir,
      workDir: join(rootDir, "certbot", "work"),
      logsDir: join(rootDir, "certbot", "logs"),
    };
    const certbot: LocalCertbot = { dirs, acmeListenerCaFile: pebble.listenerCaFile };
    // certbot refuses to create a lineage over an existing live dir: remove the self-signed one (nginx keeps
    // serving it from memory until the reload below). The VM's provisioning script does the same.
    await rm(join(layout.letsencryptDir, "live", CERT_NAME), { recursive: true, force: true });
    await installDeployHook(dirs, { reloadCommand: `kill -HUP "$(cat '${layout.pidFile}')"` });
    log("requesting a certificate with certbot (HTTP-01 through nginx)");
    await obtainCertificate(certbot, {
      domain,
      email: "ops@example.com",
      acmeServer: pebble.directoryUrl,
      webroot: layout.acmeWebroot,
      certName: CERT_NAME,
    });
    await nginx.reload();
    const caCert = join(rootDir, "ca.pem");
    await copyFile(pebble.issuerRootFile, caCert);

    await Promise.race([
      waitForPort(gatewayPort, "127.0.0.1", 30_000),
      gateway.exited.then(async (code) => {
        const tail = (await readFile(join(gatewayDir, "gateway.log"), "utf8").catch(() => "")).slice(-800);
        throw new Error(`the gateway exited (${code}) before listening:\n${tail}`);
      }),
    ]);
    const { token: adminToken } = await mintToken({
      secret: apiSecret,
      sub: "local-admin",
      scopes: [...SCOPES],
      ttlSeconds: DEMO_TOKEN_TTL_SECONDS,
      issuer: JWT_ISSUER,
      audience: JWT_AUDIENCE,
    });

    const portSuffix = (port: number, standard: number) => (port === standard ? "" : `:${port}`);
    const baseUrl = `https://${domain}${portSuffix(httpsPort, 443)}`;
    const facts: LocalStackFacts = {
      baseUrl,
      httpUrl: `http://${domain}${portSuffix(httpPort, 80)}`,
      resolve: `${domain}:${httpsPort}:127.0.0.1`,
      caCert,
      adminToken,
      sandboxOutbox,
      appSecret,
      verifyToken,
      metaWebhookUrl: `${baseUrl}/webhooks/whatsapp`,
      webhookAllowedHosts: options.webhookAllowedHosts ?? [],
      webhookAllowHttp: options.webhookAllowHttp ?? false,
    };
    await writeSecretFile(join(rootDir, "stack.json"), `${JSON.stringify(facts, null, 2)}\n`);
    return {
      ...facts,
      domain,
      rootDir,
      layout,
      nginx,
      pebble,
      gateway,
      certbot,
      processes: () => [...started],
      renew: async () => {
        await renewCertificate(certbot, CERT_NAME, true);
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** Installs missing packages when root (Debian), otherwise returns the command a person must run. */
export async function ensureLocalPackages(log: (line: string) => void): Promise<void> {
  const missing = await missingPackages();
  if (!missing.length) return;
  if (process.getuid?.() !== 0) {
    throw new Error(`missing Debian packages; run as root: apt-get install -y ${missing.join(" ")}`);
  }
  log(`installing ${missing.join(" ")}`);
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  await execFileAsync("apt-get", ["update", "-qq"], { env });
  await execFileAsync("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...missing], { env });
  // Debian starts nginx on install, on the ports the local stack may want: the stack runs its own nginx.
  await execFileAsync("systemctl", ["stop", "nginx"]).catch(() => undefined);
}
