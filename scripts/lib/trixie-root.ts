import { execFile } from "node:child_process";
import { chmod, mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { NGINX_ALLOCATOR_PACKAGE } from "../../infra/render/nginx-allocator.js";

// The edge's checks and figures run on the packages the VM runs (Debian 13 "trixie": nginx 1.26, libmodsecurity3
// 3.0.14, CRS 3.3.7, njs 0.8), also on a Debian 12 host or CI machine: a minimal trixie root filesystem, built
// once with debootstrap + apt and cached, in which nginx runs under chroot. A chroot shares the host's network
// namespace, so nginx inside it listening on 127.0.0.1:PORT is reachable from tests and load generators on the
// host. Files nginx reads or writes (config, logs, temp dirs, certificates) live under the root's /tmp: the
// host writes and reads them at `<root>/tmp/...`, nginx sees `/tmp/...` (scripts/lib/nginx.ts maps the paths).
//
//   npx tsx scripts/lib/trixie-root.ts      builds the root if it is missing (needs root, debootstrap and the
//                                           Debian mirror of /etc/apt/sources.list*); `npm test`'s pretest
//                                           runs it with --when-root (CI runs as root)
//   await trixieRoot()                      the ready root's path, or an error naming what is missing

/** The packages the VM's edge runs (infra/render/provision.sh installs the same), plus valgrind for profile:edge. */
export const TRIXIE_PACKAGES = [
  "nginx",
  "libnginx-mod-http-modsecurity",
  "modsecurity-crs",
  "libnginx-mod-http-js",
  "valgrind",
  NGINX_ALLOCATOR_PACKAGE,
] as const;

const run = promisify(execFile);

/** Where the root is cached; WAGATE_TRIXIE_ROOT overrides it. */
export const TRIXIE_ROOT = process.env.WAGATE_TRIXIE_ROOT ?? "/var/cache/wagate-edge/trixie-root";
/** Written last by the build: its presence (with the same package list) means the root is complete. */
const READY_FILE = ".wagate-ready";
const BUILD_COMMAND = "npx tsx scripts/lib/trixie-root.ts";

/** The cached trixie root, ready to run the edge; throws naming what is missing (and how to build it). */
export async function trixieRoot(root = TRIXIE_ROOT): Promise<string> {
  const ready = await readFile(join(root, READY_FILE), "utf8").catch(() => undefined);
  if (ready === undefined)
    throw new Error(
      `the Debian 13 (trixie) root for the edge is missing at ${root}: build it with \`${BUILD_COMMAND}\` (needs root, debootstrap and Debian's mirror; .ci/run does it)`,
    );
  const missing = TRIXIE_PACKAGES.filter((p) => !ready.split("\n").includes(p));
  if (missing.length)
    throw new Error(
      `the Debian 13 root at ${root} lacks ${missing.join(", ")}: add them with \`${BUILD_COMMAND}\``,
    );
  return root;
}

/**
 * A fresh working directory under the root's /tmp, which nginx inside the root can reach: [its path on the host,
 * the same directory as nginx sees it]. 0755, so nginx's workers (`nobody` when the master runs as root) can
 * reach what lies below it.
 */
export async function dirInRoot(root: string, prefix: string): Promise<[host: string, inside: string]> {
  const host = await mkdtemp(join(root, "tmp", prefix));
  await chmod(host, 0o755);
  return [host, host.slice(root.length)];
}

/** The Debian mirror this machine's apt uses (deb822 `URIs:` or one-line `deb` entries), security archive excluded. */
export async function debianMirror(): Promise<string> {
  const files = ["/etc/apt/sources.list"];
  const dir = "/etc/apt/sources.list.d";
  for (const f of await readdir(dir).catch(() => [] as string[]))
    if (f.endsWith(".list") || f.endsWith(".sources")) files.push(join(dir, f));
  for (const file of files) {
    const text = await readFile(file, "utf8").catch(() => "");
    const uris = [
      ...text.matchAll(/^URIs:\s*(\S+)/gm),
      ...text.matchAll(/^deb\s+(?:\[[^\]]*\]\s+)?(\S+)/gm),
    ].map((m) => m[1] ?? "");
    const mirror = uris.find((u) => /^https?:\/\//.test(u) && !u.includes("security"));
    if (mirror) return mirror;
  }
  throw new Error("no Debian mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d");
}

/** Builds the root unless it is ready; concurrent callers wait for one build (a lock directory beside the root). */
export async function ensureTrixieRoot(root = TRIXIE_ROOT, log = console.log): Promise<string> {
  const ready = await trixieRoot(root).catch(() => undefined);
  if (ready) return ready;
  if (process.getuid?.() !== 0)
    throw new Error("building the Debian 13 root needs root (debootstrap, chroot)");
  const lock = `${root}.lock`;
  await mkdir(join(root, ".."), { recursive: true });
  for (;;) {
    try {
      await mkdir(lock);
      break;
    } catch {
      const done = await trixieRoot(root).catch(() => undefined);
      if (done) return done;
      await sleep(2_000);
    }
  }
  try {
    const done = await trixieRoot(root).catch(() => undefined);
    if (done) return done;
    if (await readFile(join(root, READY_FILE), "utf8").catch(() => undefined)) await addPackages(root, log);
    else await build(root, log);
    return await trixieRoot(root);
  } finally {
    await rm(lock, { recursive: true, force: true });
  }
}

function chrootIn(root: string) {
  return (...args: string[]) =>
    run("chroot", [root, ...args], {
      env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", DEBIAN_FRONTEND: "noninteractive", LC_ALL: "C" },
      maxBuffer: 1 << 26,
    });
}

/** The ready file: the package list, then each package's installed version. */
async function writeReadyFile(dir: string): Promise<string> {
  // dpkg-query's own format placeholders, not a template string.
  const format = ["-f=$", "{Package} $", "{Version}\\n"].join("");
  const { stdout } = await chrootIn(dir)("dpkg-query", "-W", format, ...TRIXIE_PACKAGES);
  await writeFile(join(dir, READY_FILE), `${TRIXIE_PACKAGES.join("\n")}\n\n${stdout}`);
  return stdout;
}

/**
 * A complete root that predates a package added to TRIXIE_PACKAGES gets the missing ones installed in place: no
 * second debootstrap, and processes already running in the root keep running.
 */
async function addPackages(root: string, log: (line: string) => void): Promise<void> {
  const ready = await readFile(join(root, READY_FILE), "utf8");
  const missing = TRIXIE_PACKAGES.filter((p) => !ready.split("\n").includes(p));
  log(`trixie root: apt-get install ${missing.join(" ")} into ${root}`);
  const chroot = chrootIn(root);
  await chroot("apt-get", "update", "-qq");
  await chroot("apt-get", "install", "-y", "-qq", "--no-install-recommends", ...missing);
  await chroot("apt-get", "clean");
  await writeReadyFile(root);
}

async function build(root: string, log: (line: string) => void): Promise<void> {
  await run("debootstrap", ["--version"]).catch(() => {
    throw new Error("debootstrap is not installed: apt-get install debootstrap");
  });
  const mirror = await debianMirror();
  const staging = `${root}.building`;
  await rm(staging, { recursive: true, force: true });
  const started = Date.now();
  log(`trixie root: debootstrap --variant=minbase trixie from ${mirror}`);
  await run("debootstrap", ["--variant=minbase", "trixie", staging, mirror], { maxBuffer: 1 << 26 });
  // Packages' maintainer scripts must not start services (nginx would take port 80 on the host).
  await writeFile(join(staging, "usr/sbin/policy-rc.d"), "#!/bin/sh\nexit 101\n", { mode: 0o755 });
  await writeFile(
    join(staging, "etc/resolv.conf"),
    await readFile("/etc/resolv.conf", "utf8").catch(() => ""),
  );
  const chroot = chrootIn(staging);
  log(`trixie root: apt-get install ${TRIXIE_PACKAGES.join(" ")}`);
  await chroot("apt-get", "update", "-qq");
  await chroot("apt-get", "install", "-y", "-qq", "--no-install-recommends", ...TRIXIE_PACKAGES);
  await chroot("apt-get", "clean");
  await mkdir(join(staging, "tmp"), { recursive: true, mode: 0o1777 });
  const stdout = await writeReadyFile(staging);
  await rm(root, { recursive: true, force: true });
  await rename(staging, root);
  log(`trixie root: ready at ${root} in ${((Date.now() - started) / 1000).toFixed(0)} s\n${stdout.trim()}`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  // `--when-root` (npm's pretest): build only where it can be built; elsewhere the edge tests name what is missing.
  if (process.argv.includes("--when-root") && process.getuid?.() !== 0) {
    const ready = await trixieRoot().catch((error: Error) => error.message);
    if (ready !== TRIXIE_ROOT) console.log(`trixie root: not built (not root): ${ready}`);
  } else {
    const root = await ensureTrixieRoot();
    console.log(`trixie root: ${root}`);
  }
}
