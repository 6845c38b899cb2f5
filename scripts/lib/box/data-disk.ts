import { open } from "node:fs/promises";
import { join } from "node:path";
import type { BoxDataDisk } from "./machine.js";
import { run } from "./run.js";

// The box's data disk, the stand-in for the EBS data volume: a sparse image file attached as a loop device on
// this machine and handed to the box at a stable path (what `/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol…`
// is on AWS). It outlives the box it is attached to: `--replace` boots a brand-new root against it.

export const BOX_DATA_DEVICE = "/dev/disk/by-id/wagate-box-data";

export interface DataDisk extends BoxDataDisk {
  image: string;
  detach(): Promise<void>;
}

export async function createDataDisk(workDir: string, sizeMiB = 512): Promise<DataDisk> {
  const image = join(workDir, "data-disk.img");
  const file = await open(image, "w", 0o600);
  await file.truncate(sizeMiB * 1024 * 1024);
  await file.close();
  const hostDevice = (
    await run("losetup", ["--find", "--show", image], { label: "losetup of the data disk" })
  ).stdout.trim();
  let detached = false;
  return {
    image,
    hostDevice,
    boxPath: BOX_DATA_DEVICE,
    detach: async () => {
      if (detached) return;
      detached = true;
      await run("losetup", ["--detach", hostDevice], { check: false });
    },
  };
}
