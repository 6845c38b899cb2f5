import { z } from "zod";
import { DEBIAN_CERTBOT_DIRS } from "./certbot.js";
import { BACKUP_DIR, GATEWAY_DATA_DIR } from "./systemd.js";

// The data volume: everything that must outlive an instance lives on one block device of its own (an EBS
// volume on AWS, a loop image in the box), so the instance and its root volume are disposable. provision.sh's
// `data` step formats it only when it carries nothing, mounts it by filesystem UUID at DATA_MOUNT_DIR, and
// bind-mounts one directory of it over each path below: the programs keep their usual paths and never learn
// where the data lives.

/** Where the volume itself is mounted. */
export const DATA_MOUNT_DIR = "/srv/wagate";
/** ext4 label of a volume the step formatted (a hint for humans; the fstab entry uses the UUID). */
export const DATA_LABEL = "wagate-data";

export interface KeptDirectory {
  /** Directory on the volume, relative to DATA_MOUNT_DIR. */
  readonly name: string;
  /** Where it is bind-mounted on the host. */
  readonly path: string;
  /** Why it must outlive the instance (the README lists these). */
  readonly why: string;
}

/** What outlives an instance. Order matters only for reading; each is independent. */
export const KEPT_DIRECTORIES: readonly KeptDirectory[] = [
  {
    name: "gateway",
    path: GATEWAY_DATA_DIR,
    why: "the SQLite database (messages, outbox, broadcasts, OTP codes, tokens revoked, numbers) and the sandbox outbox",
  },
  {
    name: "letsencrypt",
    path: DEBIAN_CERTBOT_DIRS.configDir,
    why: "the ACME account, the certificate and its renewal settings: a new instance re-uses them instead of re-issuing",
  },
  {
    name: "backups",
    path: BACKUP_DIR,
    why: "the local copies of the daily backup (what a restore starts from when S3 is out of reach)",
  },
];

/**
 * A stable path of the block device: on AWS `/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol…` (the
 * volume id, whatever name the kernel gives the device), never a guess such as `/dev/xvdf`.
 */
export const dataDeviceSchema = z
  .string()
  .regex(/^\/dev\/[A-Za-z0-9._:/+-]+$/, "must be a device path under /dev/ (a stable one: /dev/disk/by-id/…)")
  .refine((p) => !p.split("/").includes(".."), "must not contain ..");

/** systemd drop-in: units that read a kept directory start only once it is mounted (the volume is `nofail`). */
export function renderRequiresDataDropIn(paths: readonly string[]): string {
  return `# Rendered by wagate (infra/render/data-volume.ts): these paths live on the data volume, mounted nofail.
[Unit]
RequiresMountsFor=${paths.join(" ")}
`;
}
