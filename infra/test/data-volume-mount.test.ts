import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { requireBinary } from "../../scripts/lib/processes.js";
import { type HostBundleInput, renderHostBundle } from "../render/bundle.js";
import { DEBIAN_CERTBOT_DIRS } from "../render/certbot.js";
import { dataDeviceSchema, KEPT_DIRECTORIES } from "../render/data-volume.js";
import { rateLimitSchema, wafSchema } from "../render/settings.js";
import { BACKUP_DIR, GATEWAY_DATA_DIR } from "../render/systemd.js";

// provision.sh's `data` step for real, on loop images of this machine: a blank volume is formatted and mounted, a
// second run changes nothing, a "new instance" (fresh mount points, empty fstab) finds the data without formatting,
// an instance that kept its data on the root volume moves it onto a new volume, and a disk holding something else
// is refused untouched. Every path is redirected into a scratch directory (the step's own variables), so the
// host's fstab and directories are never touched; systemd is stubbed out (no unit is installed here).

const execFileAsync = promisify(execFile);

const input: HostBundleInput = {
  stack: "prod",
  domain: "api.example.com",
  acmeEmail: "ops@example.com",
  acmeServer: "production",
  rateLimit: rateLimitSchema.parse({}),
  waf: wafSchema.parse({}),
  backupBucket: "",
  awsRegion: "eu-west-1",
  dataDevice: "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0",
};

let dir: string;
let bundleDir: string;
const loops: string[] = [];

async function sh(script: string): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await execFileAsync("bash", ["-c", script]);
    return { code: 0, out: stdout + stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === "number" ? e.code : -1, out: `${e.stdout ?? ""}${e.stderr ?? ""}` };
  }
}

async function loopImage(name: string): Promise<string> {
  const image = join(dir, `${name}.img`);
  await writeFile(image, "");
  await truncate(image, 64 * 1024 * 1024);
  const { stdout } = await execFileAsync("losetup", ["--find", "--show", image]);
  loops.push(stdout.trim());
  return stdout.trim();
}

/** An "instance": its own mount points and fstab, the step run against `device`. */
function instance(name: string) {
  const root = join(dir, name);
  const kept = KEPT_DIRECTORIES.map((d) => `${d.name}:${root}${d.path}`);
  const byName = new Map(KEPT_DIRECTORIES.map((d) => [d.name, `${root}${d.path}`]));
  // A kept directory's path in this instance; a name the volume does not keep throws (never a path relative to
  // the working directory).
  const path = (name: string) => {
    const found = byName.get(name);
    if (found === undefined) throw new Error(`the data volume keeps no directory named ${name}`);
    return found;
  };
  const runStep = (device: string) =>
    sh(
      [
        `source ${bundleDir}/provision.sh`,
        "step=data",
        `DATA_DEVICE=${device}`,
        `DATA_MOUNT_DIR=${root}/srv/wagate`,
        `DATA_KEPT=(${kept.join(" ")})`,
        `FSTAB_FILE=${root}/etc/fstab`,
        "GATEWAY_DATA_DIR=/nonexistent GATEWAY_UNIT=wagate-test-none.service",
        // No unit is installed on this machine.
        "unit() { return 1; }",
        "daemon_reload() { :; }",
        "mkdir -p $(dirname $FSTAB_FILE)",
        "step_data",
      ].join("\n"),
    );
  return { root, path, runStep, fstab: () => readFile(join(root, "etc/fstab"), "utf8").catch(() => "") };
}

async function unmountUnder(root: string) {
  const mounts = (await readFile("/proc/mounts", "utf8"))
    .split("\n")
    .map((l) => l.split(" ")[1] ?? "")
    .filter((m) => m.startsWith(`${root}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) await execFileAsync("umount", [m]).catch(() => execFileAsync("umount", ["-l", m]));
}

const changeLines = (out: string) =>
  out.split("\n").filter((l) => /^wagate\[data\]: (changed|formatting|moving|stopping)/.test(l));

beforeAll(async () => {
  for (const [binary, pkg] of [
    ["losetup", "mount"],
    ["mkfs.ext4", "e2fsprogs"],
    ["blkid", "util-linux"],
    ["mkswap", "util-linux"],
  ] as const)
    await requireBinary(binary, pkg);
  if (process.getuid?.() !== 0) throw new Error("the data volume test needs root (loop devices, mount)");
  dir = await mkdtemp(join(tmpdir(), "wagate-data-volume-"));
  bundleDir = join(dir, "bundle");
  for (const [name, content] of Object.entries(renderHostBundle(input).files)) {
    await mkdir(dirname(join(bundleDir, name)), { recursive: true });
    await writeFile(join(bundleDir, name), content);
  }
});

afterAll(async () => {
  if (!dir) return;
  await unmountUnder(dir);
  for (const loop of loops) await execFileAsync("losetup", ["--detach", loop]).catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
});

describe("the data step on a loop device", () => {
  it("formats a blank volume once, mounts it by UUID, and a new instance finds the data on it", async () => {
    const device = await loopImage("volume");
    const first = instance("first");
    const run1 = await first.runStep(device);
    expect(run1.code, run1.out).toBe(0);
    expect(run1.out).toContain(`formatting ${device} as ext4`);
    const uuid = (await execFileAsync("blkid", ["-p", "-o", "value", "-s", "UUID", device])).stdout.trim();
    const fstab = await first.fstab();
    expect(fstab).toContain(`UUID=${uuid} ${first.root}/srv/wagate ext4 defaults,nofail,noatime 0 2`);
    for (const d of KEPT_DIRECTORIES)
      expect(fstab).toContain(`${first.root}/srv/wagate/${d.name} ${first.root}${d.path} none bind,nofail,`);

    // Data written at the usual paths lands on the volume.
    await writeFile(join(first.path("gateway"), "wagate.db"), "the database");
    await mkdir(join(first.path("letsencrypt"), "live/wagate"), { recursive: true });
    await writeFile(join(first.path("letsencrypt"), "live/wagate/cert.pem"), "the certificate");

    const run2 = await first.runStep(device);
    expect(run2.code, run2.out).toBe(0);
    expect(changeLines(run2.out)).toEqual([]);

    // The instance is gone (its mounts with it); a brand-new one gets the same volume.
    await unmountUnder(first.root);
    const second = instance("second");
    const run3 = await second.runStep(device);
    expect(run3.code, run3.out).toBe(0);
    expect(run3.out).not.toContain("formatting");
    expect(await readFile(join(second.path("gateway"), "wagate.db"), "utf8")).toBe("the database");
    expect(await readFile(join(second.path("letsencrypt"), "live/wagate/cert.pem"), "utf8")).toBe(
      "the certificate",
    );
    await unmountUnder(second.root);
  });

  it("moves what an instance kept on its root volume onto a new volume", async () => {
    const device = await loopImage("migration");
    const old = instance("old");
    await mkdir(old.path("gateway"), { recursive: true });
    await writeFile(join(old.path("gateway"), "wagate.db"), "rows from the root volume");
    const run = await old.runStep(device);
    expect(run.code, run.out).toBe(0);
    expect(run.out).toContain(`moving ${old.path("gateway")} onto the data volume`);
    await unmountUnder(old.root);
    const fresh = instance("after-migration");
    expect((await fresh.runStep(device)).code).toBe(0);
    expect(await readFile(join(fresh.path("gateway"), "wagate.db"), "utf8")).toBe(
      "rows from the root volume",
    );
    await unmountUnder(fresh.root);
  });

  it("refuses a disk that holds something else, and leaves it as it was", async () => {
    const device = await loopImage("foreign");
    await execFileAsync("mkswap", [device]);
    const host = instance("foreign");
    const run = await host.runStep(device);
    expect(run.code).toBe(1);
    expect(run.out).toMatch(/holds TYPE=swap, not an ext4 filesystem: refusing to use or format it/);
    expect((await execFileAsync("blkid", ["-p", "-o", "value", "-s", "TYPE", device])).stdout.trim()).toBe(
      "swap",
    );
    expect(await host.fstab()).toBe("");
  });

  it("names a missing device instead of waiting forever or formatting something else", async () => {
    const host = instance("missing");
    const run = await sh(
      `source ${bundleDir}/provision.sh; step=data; DATA_DEVICE=${dir}/no-such-device; wait_for_device() { [[ -b "$DATA_DEVICE" ]] || die "no block device at $DATA_DEVICE"; }; FSTAB_FILE=${host.root}/fstab; step_data`,
    );
    expect(run.code).toBe(1);
    expect(run.out).toContain(`no block device at ${dir}/no-such-device`);
  });
});

describe("what the data volume keeps", () => {
  it("the gateway's data directory (the database), certbot's (the ACME account and certificates) and the backups", () => {
    expect(KEPT_DIRECTORIES.map((d) => d.path).sort()).toEqual(
      [GATEWAY_DATA_DIR, DEBIAN_CERTBOT_DIRS.configDir, BACKUP_DIR].sort(),
    );
    // certbot keeps its account under the config directory, and the container's /data is the gateway directory.
    expect(DEBIAN_CERTBOT_DIRS.configDir).toBe("/etc/letsencrypt");
    expect(renderHostBundle(input).files["systemd/wagate-gateway.service"]).toContain(
      `--volume=${GATEWAY_DATA_DIR}:/data:rw`,
    );
  });
});

describe("dataDevice", () => {
  it.each([
    ["/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0", true],
    ["/dev/loop3", true],
    ["xvdf", false],
    ["/dev/../etc/passwd", false],
    ["/dev/disk/by-id/a b", false],
    ["/dev/sdf;reboot", false],
  ])("%s is %s", (path, ok) => {
    expect(dataDeviceSchema.safeParse(path).success).toBe(ok);
  });

  it("is refused by the bundle naming the field", () => {
    expect(() => renderHostBundle({ ...input, dataDevice: "xvdf" })).toThrow(
      /^host bundle: dataDevice must be/,
    );
  });

  it("without it, the step keeps the data on the root volume and the units carry no data drop-in", () => {
    const { dataDevice: _, ...rest } = input;
    const bundle = renderHostBundle(rest);
    expect(bundle.files["vars.sh"]).toContain("DATA_DEVICE=''");
    expect(Object.keys(bundle.files).filter((f) => f.includes("wagate-data.conf"))).toEqual([]);
    const withDevice = renderHostBundle(input);
    expect(withDevice.files["systemd/nginx.service.d/wagate-data.conf"]).toContain(
      "RequiresMountsFor=/var/lib/wagate /etc/letsencrypt /var/backups/wagate",
    );
  });
});
