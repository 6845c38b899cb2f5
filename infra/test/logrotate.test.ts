import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  freePort,
  requireBinary,
  type Started,
  startProcess,
  waitForPort,
} from "../../scripts/lib/processes.js";
import { renderHostBundle } from "../render/bundle.js";
import { renderAccessLogRotation } from "../render/logrotate.js";
import { ACCESS_LOG_FILE } from "../render/nginx.js";
import { stagingBundleInput } from "./fixtures/host-bundle.js";

// The access-log rotation rule, run by the real logrotate against a real nginx writing the log: the old lines
// move to access.json.1, and nginx (told by the rule's postrotate command) writes new lines to a new file.
// Beside Debian's own nginx rule the two must not overlap: logrotate refuses a log listed twice.

const execFileAsync = promisify(execFile);
let dir: string;
let nginx: Started | undefined;
let port: number;

async function nginxMasterPid(): Promise<number> {
  return Number((await readFile(join(dir, "nginx.pid"), "utf8")).trim());
}

async function logLines(name: string): Promise<string[]> {
  return (await readFile(join(dir, "logs", name), "utf8")).split("\n").slice(0, -1);
}

beforeAll(async () => {
  await requireBinary("nginx", "nginx");
  await requireBinary("logrotate", "logrotate");
  dir = await mkdtemp(join(tmpdir(), "wagate-logrotate-"));
  await mkdir(join(dir, "logs"));
  port = await freePort();
  await writeFile(
    join(dir, "nginx.conf"),
    `pid ${join(dir, "nginx.pid")};
error_log ${join(dir, "logs", "error.log")};
events {}
http {
  access_log ${join(dir, "logs", ACCESS_LOG_FILE)};
  client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};
  server { listen 127.0.0.1:${port}; location / { return 204; } }
}
`,
  );
  nginx = startProcess("nginx", "nginx", ["-p", dir, "-c", join(dir, "nginx.conf"), "-g", "daemon off;"]);
  await waitForPort(port, "127.0.0.1", 10_000);
});

afterAll(async () => {
  await nginx?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("access log rotation", () => {
  it("moves the old lines aside and nginx writes on in a new file", async () => {
    await fetch(`http://127.0.0.1:${port}/before`);
    expect((await logLines(ACCESS_LOG_FILE)).some((l) => l.includes("/before"))).toBe(true);

    const rule = join(dir, "rule");
    await writeFile(
      rule,
      renderAccessLogRotation({
        logDir: join(dir, "logs"),
        user: userInfo().username,
        reopenCommand: `kill -USR1 ${await nginxMasterPid()}`,
      }),
      { mode: 0o644 },
    );
    const { stderr } = await execFileAsync("logrotate", ["--force", "--state", join(dir, "state"), rule]);
    expect(stderr).toBe("");

    const rotated = await logLines(`${ACCESS_LOG_FILE}.1`);
    expect(rotated.some((l) => l.includes("/before"))).toBe(true);
    // nginx reopens its logs in the master, then in the workers: wait for the new file to get the new line.
    let current: string[] = [];
    for (let i = 0; i < 50 && !current.some((l) => l.includes("/after")); i++) {
      await fetch(`http://127.0.0.1:${port}/after`);
      current = await logLines(ACCESS_LOG_FILE).catch(() => []);
      if (!current.some((l) => l.includes("/after"))) await sleep(100);
    }
    expect(current.some((l) => l.includes("/after"))).toBe(true);
    expect(current.some((l) => l.includes("/before"))).toBe(false);
    expect((await stat(join(dir, "logs", ACCESS_LOG_FILE))).mode & 0o777).toBe(0o640);
  });

  it("the VM's rule and Debian's nginx rule together name every log once", async () => {
    const debianRule = "/etc/logrotate.d/nginx";
    await stat(debianRule).catch(() => {
      throw new Error(`${debianRule} is missing: install the Debian package nginx-common`);
    });
    const bundle = renderHostBundle(stagingBundleInput);
    const ours = join(dir, "wagate-rule");
    await writeFile(ours, bundle.files["logrotate/access-log"] ?? "", { mode: 0o644 });
    expect(bundle.files["logrotate/access-log"]).toContain(`/var/log/nginx/${ACCESS_LOG_FILE} {`);
    // --debug reads and checks the rules and rotates nothing.
    const { stderr } = await execFileAsync("logrotate", [
      "--debug",
      "--state",
      join(dir, "state-vm"),
      debianRule,
      ours,
    ]);
    // A log named twice is "error: …: duplicate log entry for …"; a rule logrotate cannot parse is "error: …" too.
    expect(stderr).not.toMatch(/^error:/m);
    expect(stderr).toContain(`/var/log/nginx/${ACCESS_LOG_FILE}`);
    expect(bundle.steps.find((s) => s.name === "nginx")?.uses).toContain("logrotate/access-log");
  });
});
