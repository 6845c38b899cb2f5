import { execFile } from "node:child_process";
import { access, chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { IDENTITY_KEY_FILE } from "../../infra/render/edge-js.js";
import { type EdgeLayout, layoutDirectories } from "../../infra/render/layout.js";
import { ERROR_LOG_FILE } from "../../infra/render/nginx.js";
import { NGINX_ENVIRONMENT } from "../../infra/render/nginx-allocator.js";
import { requireBinary, type Started, startProcess, waitForPort } from "./processes.js";

// Runs what `renderNginx` rendered, for real: the local stack, the integration tests and the benchmark.
//
//   const files = renderNginx({ domain, rateLimit, waf, layout });
//   await writeSelfSignedCertificate(layout, domain);          // until certbot replaces it
//   const nginx = await startNginx({ layout, files });
//   ...; await nginx.reload(); ...; await nginx.stop();
//
// The files are written under layout.confDir, `nginx -t` must pass, then nginx runs in the foreground
// (`daemon off`) under startProcess, so it is stopped by pid like every other process.
//
// `root`: run the nginx of another root filesystem under chroot (the cached Debian 13 root of
// scripts/lib/trixie-root.ts, so checks and figures use the VM's packages on a Debian 12 host). `layout` is then
// what nginx sees inside the root; the host reads and writes the same files at `<root><path>`
// (`hostLayout(layout, root)`); RunningNginx.layout is that host view.

const run = promisify(execFile);

export interface StartNginxOptions {
  readonly layout: EdgeLayout;
  /** renderNginx's output: paths relative to layout.confDir → contents. */
  readonly files: Readonly<Record<string, string>>;
  /** Where nginx's own stdout/stderr go (default `<logDir>/nginx.out`, host path). */
  readonly logFile?: string;
  /** Root filesystem to run nginx in (chroot); undefined: the host's nginx. */
  readonly root?: string;
}

export interface RunningNginx extends Started {
  /** The layout as the host sees it (paths under the root when nginx runs in one). */
  readonly layout: EdgeLayout;
  /** The root filesystem nginx runs in, if any. */
  readonly root: string | undefined;
  readonly errorLog: string;
  /** Re-writes `files` if given, checks them with `nginx -t`, sends SIGHUP and waits until new workers serve. */
  reload(files?: Readonly<Record<string, string>>): Promise<void>;
}

const PATH_FIELDS = [
  "prefix",
  "confDir",
  "pidFile",
  "tempDir",
  "logDir",
  "letsencryptDir",
  "certificate",
  "certificateKey",
  "acmeWebroot",
  "modsecurityDir",
  "crsDir",
  "modulesDir",
] as const satisfies readonly (keyof EdgeLayout)[];

/** The layout nginx sees inside `root`, as paths on the host (unchanged without a root). */
export function hostLayout(layout: EdgeLayout, root: string | undefined): EdgeLayout {
  if (!root) return layout;
  const mapped: Record<string, unknown> = { ...layout };
  for (const field of PATH_FIELDS) mapped[field] = join(root, layout[field]);
  return mapped as unknown as EdgeLayout;
}

/**
 * The command line that runs nginx (inside `root` under chroot when given), with the environment the VM's
 * nginx.service gives it (its allocator, infra/render/nginx-allocator.ts), so that figures and checks here run
 * what runs there.
 */
export function nginxCommand(root: string | undefined, args: string[]): [string, string[]] {
  const env = Object.entries(NGINX_ENVIRONMENT).map(([k, v]) => `${k}=${v}`);
  return root ? ["chroot", [root, "env", ...env, "nginx", ...args]] : ["env", [...env, "nginx", ...args]];
}

/** The version of the nginx that would run (`nginx -v`), e.g. "1.26.3". */
export async function nginxVersion(root?: string): Promise<string> {
  const [command, args] = nginxCommand(root, ["-v"]);
  const { stderr, stdout } = await run(command, args);
  const version = `${stderr}${stdout}`.match(/nginx\/(\d+\.\d+\.\d+)/)?.[1];
  if (!version) throw new Error(`could not read nginx's version from: ${stderr.trim()}`);
  return version;
}

function nginxArgs(layout: EdgeLayout): string[] {
  return [
    "-p",
    layout.prefix,
    "-c",
    join(layout.confDir, "nginx.conf"),
    "-e",
    join(layout.logDir, ERROR_LOG_FILE),
  ];
}

async function writeFiles(layout: EdgeLayout, files: Readonly<Record<string, string>>): Promise<void> {
  for (const dir of layoutDirectories(layout)) await mkdir(dir, { recursive: true });
  for (const [name, contents] of Object.entries(files)) {
    const path = join(layout.confDir, name);
    await mkdir(dirname(path), { recursive: true });
    // The token key is a secret: readable by nginx's master (root, or the user running it) only.
    const secret = basename(name) === IDENTITY_KEY_FILE;
    await writeFile(path, contents, secret ? { mode: 0o600 } : {});
    if (secret) await chmod(path, 0o600);
  }
  // Workers run as an unprivileged user when the master is root: they must reach the webroot and temp dirs.
  if (process.getuid?.() === 0) {
    for (const dir of [layout.prefix, ...layoutDirectories(layout)])
      await chmod(dir, 0o755).catch(() => undefined);
  }
}

async function checkConfig(layout: EdgeLayout, root: string | undefined): Promise<void> {
  try {
    const [command, args] = nginxCommand(root, ["-t", "-q", ...nginxArgs(layout)]);
    await run(command, args);
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? String(error);
    throw new Error(`nginx -t refused the rendered configuration:\n${stderr.trim()}`);
  }
}

/** The worker pids of a master, from /proc (Linux). */
async function workerPids(masterPid: number): Promise<Set<number>> {
  const text = await readFile(`/proc/${masterPid}/task/${masterPid}/children`, "utf8").catch(() => "");
  return new Set(
    text
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map((p) => Number(p)),
  );
}

export async function startNginx(options: StartNginxOptions): Promise<RunningNginx> {
  const { layout, files, root } = options;
  const host = hostLayout(layout, root);
  const where = root ? ` in ${root}` : "";
  if (root) await requireBinary("chroot", "coreutils");
  else await requireBinary("nginx", "nginx");
  await access(join(root ?? "/", "usr/sbin/nginx")).catch(() => {
    throw new Error(`nginx is not installed${where}: apt-get install nginx`);
  });
  if (Object.keys(files).some((f) => f.includes("modsecurity"))) {
    await access(join(host.modulesDir, "ngx_http_modsecurity_module.so")).catch(() => {
      throw new Error(
        `the ModSecurity module is not installed${where}: apt-get install libnginx-mod-http-modsecurity`,
      );
    });
    await access(join(host.crsDir, "rules")).catch(() => {
      throw new Error(`the OWASP CRS is not installed${where}: apt-get install modsecurity-crs`);
    });
  }
  if (Object.values(files).some((text) => text.includes("ngx_http_js_module.so")))
    await access(join(host.modulesDir, "ngx_http_js_module.so")).catch(() => {
      throw new Error(`the njs module is not installed${where}: apt-get install libnginx-mod-http-js`);
    });
  await writeFiles(host, files);
  await checkConfig(layout, root);
  const [command, args] = nginxCommand(root, [...nginxArgs(layout), "-g", "daemon off;"]);
  const started = startProcess("nginx", command, args, {
    logFile: options.logFile ?? join(host.logDir, "nginx.out"),
  });
  try {
    await Promise.race([
      Promise.all([
        waitForPort(layout.httpPort, layout.listenHost),
        waitForPort(layout.httpsPort, layout.listenHost),
      ]),
      started.exited.then((code) => {
        throw new Error(`nginx exited (${code}) before listening; see ${join(host.logDir, ERROR_LOG_FILE)}`);
      }),
    ]);
  } catch (error) {
    await started.stop();
    throw error;
  }
  const reload = async (newFiles?: Readonly<Record<string, string>>): Promise<void> => {
    if (newFiles) await writeFiles(host, newFiles);
    await checkConfig(layout, root);
    const before = await workerPids(started.pid);
    started.child.kill("SIGHUP");
    const deadline = Date.now() + 15_000;
    for (;;) {
      const now = await workerPids(started.pid);
      const fresh = [...now].some((p) => !before.has(p));
      const oldGone = ![...before].some((p) => now.has(p));
      if (fresh && oldGone) return;
      if (Date.now() > deadline)
        throw new Error("nginx did not replace its workers within 15 s after SIGHUP");
      await sleep(50);
    }
  };
  return { ...started, layout: host, root, errorLog: join(host.logDir, ERROR_LOG_FILE), reload };
}

/**
 * A throwaway self-signed certificate at layout.certificate/certificateKey (P-256, one day) so nginx can listen
 * on 443 before the first ACME issuance. Does nothing when a certificate is already there, unless `overwrite`.
 */
export async function writeSelfSignedCertificate(
  layout: EdgeLayout,
  domain: string,
  options: { overwrite?: boolean } = {},
): Promise<void> {
  if (!options.overwrite) {
    const present = await access(layout.certificate).then(
      () => true,
      () => false,
    );
    if (present) return;
  }
  await requireBinary("openssl", "openssl");
  await mkdir(dirname(layout.certificate), { recursive: true });
  await mkdir(dirname(layout.certificateKey), { recursive: true });
  await run("openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-days",
    "1",
    "-subj",
    `/CN=${domain}`,
    "-addext",
    `subjectAltName=DNS:${domain}`,
    "-keyout",
    layout.certificateKey,
    "-out",
    layout.certificate,
  ]);
  await chmod(layout.certificateKey, 0o600);
}
