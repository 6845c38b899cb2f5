import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { TRIXIE_PACKAGES, trixieRoot } from "../lib/trixie-root.js";

// A test that needs the Debian 13 root fails naming what is missing, and how to build it.

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe("trixieRoot", () => {
  it("names the missing root and the command that builds it", async () => {
    const dir = await mkdtemp(join(tmpdir(), "wagate-no-root-"));
    dirs.push(dir);
    await expect(trixieRoot(join(dir, "root"))).rejects.toThrow(
      /Debian 13 \(trixie\) root .* missing at .*\/root: build it with `npx tsx scripts\/lib\/trixie-root.ts`/,
    );
  });

  it("names the packages a root built with an older list lacks", async () => {
    const dir = await mkdtemp(join(tmpdir(), "wagate-old-root-"));
    dirs.push(dir);
    await writeFile(join(dir, ".wagate-ready"), "nginx\nmodsecurity-crs\n");
    await expect(trixieRoot(dir)).rejects.toThrow(
      /lacks libnginx-mod-http-modsecurity, libnginx-mod-http-js/,
    );
    await writeFile(join(dir, ".wagate-ready"), `${TRIXIE_PACKAGES.join("\n")}\n`);
    await expect(trixieRoot(dir)).resolves.toBe(dir);
  });
});
