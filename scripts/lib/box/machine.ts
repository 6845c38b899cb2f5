import { chmod, cp, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type Started, startProcess } from "../processes.js";
import { BOX_ADDRESS, BOX_CACHE_DIR, NETNS, NODE_BASE_TAR_IN_BOX, SSH_USER } from "./constants.js";
import { removeRoot } from "./root.js";
import { run } from "./run.js";

// One boot of the box: a copy of the cached root (so every run starts from a bare Debian), the SSH key the
// stack would generate (ED25519) authorized for `admin`, apt pointed at the host-side proxy, and systemd as
// PID 1 under systemd-nspawn in the box's own network namespace, with the data disk at a stable device path.

export interface BootedBox {
  dir: string;
  nspawn: Started;
  /** ssh(1) arguments that reach the box as `admin` with the run's key, host key pinned. */
  sshArgs: string[];
  keyFile: string;
  /** The box's host key (`ssh-ed25519 <base64>`), made before boot: what the executor pins. */
  hostKey: string;
  /** Powers the box off (its systemd stops every service cleanly) and keeps its root. */
  powerOff(): Promise<void>;
  /** Powers off and removes the root. */
  stop(): Promise<void>;
}

/** A box whose root is copied and keyed, not started yet (what AWS has made before the instance boots). */
export interface PreparedBox {
  dir: string;
  keyFile: string;
  sshArgs: string[];
  start(): Promise<BootedBox>;
  /** Removes the root of a box that was never started. */
  discard(): Promise<void>;
}

/** The box's data disk: a block device of this machine, seen in the box at a stable path. */
export interface BoxDataDisk {
  /** e.g. /dev/loop3 */
  hostDevice: string;
  /** e.g. /dev/disk/by-id/wagate-box-data (what the bundle's `dataDevice` names). */
  boxPath: string;
}

export interface BootOptions {
  root: string;
  /** Scratch directory of this run (key, known_hosts, logs, SSH control socket). */
  workDir: string;
  proxyUrl: string;
  nodeBaseTar: string;
  /**
   * Keep podman's storage (images, build layers) across boxes: a rerun with unchanged sources skips the image
   * build, as a VM's second `pulumi up` does. false: a cold build, what a new VM goes through.
   */
  imageCache: boolean;
  /** Name of this box's root under the cache (a replacement is prepared while its predecessor runs). */
  name?: string;
  dataDisk?: BoxDataDisk;
}

export async function bootBox(options: BootOptions): Promise<BootedBox> {
  return (await prepareBox(options)).start();
}

export async function prepareBox(options: BootOptions): Promise<PreparedBox> {
  const name = options.name ?? "box";
  const dir = join(BOX_CACHE_DIR, name);
  const boxWork = join(options.workDir, name);
  await mkdir(boxWork, { recursive: true });
  await removeRoot(dir);
  await run("cp", ["-a", "--reflink=auto", options.root, dir], { label: "copy of the cached root" });
  await rm(join(dir, ".wagate-complete"), { force: true });

  const keyFile = join(boxWork, "id_ed25519");
  await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "wagate-box", "-f", keyFile]);
  const sshDir = join(dir, "home", SSH_USER, ".ssh");
  await mkdir(sshDir, { recursive: true, mode: 0o700 });
  await writeFile(join(sshDir, "authorized_keys"), await readFile(`${keyFile}.pub`), { mode: 0o600 });
  const ids = (await readFile(join(dir, "etc/passwd"), "utf8"))
    .split("\n")
    .find((l) => l.startsWith(`${SSH_USER}:`))
    ?.split(":");
  await run("chown", ["-R", `${ids?.[2]}:${ids?.[3]}`, sshDir]);
  await chmod(sshDir, 0o700);
  // A fresh host key per box, pinned on our side (Pulumi's `hostKey`): nothing else can answer as the box.
  await rm(join(dir, "etc/ssh/ssh_host_ed25519_key"), { force: true });
  await rm(join(dir, "etc/ssh/ssh_host_ed25519_key.pub"), { force: true });
  await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(dir, "etc/ssh/ssh_host_ed25519_key")]);
  const hostKey = (await readFile(join(dir, "etc/ssh/ssh_host_ed25519_key.pub"), "utf8")).split(" ");
  const knownHosts = join(boxWork, "known_hosts");
  await writeFile(knownHosts, `${BOX_ADDRESS} ${hostKey[0]} ${hostKey[1]}\n`);

  await writeFile(
    join(dir, "etc/apt/apt.conf.d/01wagate-box-proxy"),
    `// The box reaches Debian's mirror only through the host-side proxy.\nAcquire::http::Proxy "${options.proxyUrl}";\n`,
  );
  await mkdir(join(dir, NODE_BASE_TAR_IN_BOX, ".."), { recursive: true });
  await cp(options.nodeBaseTar, join(dir, NODE_BASE_TAR_IN_BOX));

  const aptArchives = join(BOX_CACHE_DIR, "apt-archives");
  const aptLists = join(BOX_CACHE_DIR, "apt-lists");
  await mkdir(join(aptArchives, "partial"), { recursive: true });
  await mkdir(join(aptLists, "partial"), { recursive: true });
  const containers = join(BOX_CACHE_DIR, "containers");
  if (options.imageCache) await mkdir(containers, { recursive: true });

  const sshArgs = [
    "-i",
    keyFile,
    "-o",
    "BatchMode=yes",
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    `UserKnownHostsFile=${knownHosts}`,
    "-o",
    "StrictHostKeyChecking=yes",
    "-o",
    "ConnectTimeout=5",
    // A box that stops answering fails the step within a minute instead of hanging on TCP retransmissions.
    "-o",
    "ServerAliveInterval=15",
    "-o",
    "ServerAliveCountMax=4",
    "-o",
    "LogLevel=ERROR",
    "-o",
    "ControlMaster=auto",
    "-o",
    `ControlPath=${join(boxWork, "ssh-control")}`,
    "-o",
    "ControlPersist=300",
    `${SSH_USER}@${BOX_ADDRESS}`,
  ];
  const start = async (): Promise<BootedBox> => {
    const nspawn = startProcess(
      "systemd-nspawn",
      "systemd-nspawn",
      [
        `--directory=${dir}`,
        "--boot",
        "--register=no",
        "--keep-unit",
        "--machine=wagate-box",
        `--network-namespace-path=/run/netns/${NETNS}`,
        // Downloaded .debs and apt lists survive the box: a rerun installs from the cache.
        `--bind=${aptArchives}:/var/cache/apt/archives`,
        `--bind=${aptLists}:/var/lib/apt/lists`,
        ...(options.imageCache ? [`--bind=${containers}:/var/lib/containers`] : []),
        // fail2ban's bans are nftables rules: the box needs CAP_NET_ADMIN, in its own network namespace only.
        "--capability=CAP_NET_ADMIN",
        // The data disk (the EBS volume's stand-in): a block device node at the stable path the bundle names.
        ...(options.dataDisk ? [`--bind=${options.dataDisk.hostDevice}:${options.dataDisk.boxPath}`] : []),
      ],
      { logFile: join(boxWork, "boot.log") },
    );
    const powerOff = async () => {
      await run("ssh", [...sshArgs.slice(0, -1), "-O", "exit", sshArgs.at(-1) ?? ""], { check: false });
      // SIGTERM makes nspawn power the box off cleanly (SIGRTMIN+3 to its systemd); SIGKILL after 30 s.
      await nspawn.stop(30_000);
    };
    const stop = async () => {
      await powerOff();
      await removeRoot(dir);
    };
    return { dir, nspawn, sshArgs, keyFile, hostKey: `${hostKey[0]} ${hostKey[1]?.trim()}`, powerOff, stop };
  };
  return { dir, keyFile, sshArgs, start, discard: () => removeRoot(dir) };
}
