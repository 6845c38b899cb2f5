import { execFile } from "node:child_process";
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { requireBinary } from "../../scripts/lib/processes.js";
import { type HostBundleInput, renderHostBundle } from "../render/bundle.js";
import { rateLimitSchema, wafSchema } from "../render/settings.js";

// The provisioning script and the scripts it installs, checked with the real tools: shellcheck on everything
// the bundle ships, systemd's own verifier on the units, the script's idempotent file installer on a scratch
// directory, and the backup script against a live SQLite database in WAL mode.

const execFileAsync = promisify(execFile);
const require = createRequire(import.meta.url);

const input: HostBundleInput = {
  stack: "prod",
  domain: "api.example.com",
  acmeEmail: "ops@example.com",
  acmeServer: "production",
  rateLimit: rateLimitSchema.parse({}),
  waf: wafSchema.parse({}),
  backupBucket: "wagate-prod-backups",
  awsRegion: "eu-west-1",
  podman: {
    globalArgs: ["--runtime", "crun"],
    cgroups: "disabled",
    extraBuildArgs: ["--build-arg", "BASE=x y"],
  },
};

let dir: string;
let bundleDir: string;

async function run(
  command: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(command, args, options);
    return { code: 0, out: stdout + stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === "number" ? e.code : -1, out: `${e.stdout ?? ""}${e.stderr ?? ""}` };
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "wagate-provision-"));
  bundleDir = join(dir, "bundle");
  for (const [name, content] of Object.entries(renderHostBundle(input).files)) {
    const path = join(bundleDir, name);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, content);
  }
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("shell scripts in the bundle", () => {
  it("are shellcheck clean (provision.sh with the vars.sh it sources, backup script, deploy hook)", async () => {
    await requireBinary("shellcheck", "shellcheck");
    const scripts = ["provision.sh", "vars.sh", "backup/backup.sh", "certbot/deploy-hook.sh"];
    const result = await run("shellcheck", ["--external-sources", "--severity=style", ...scripts], {
      cwd: bundleDir,
    });
    expect(result.out).toBe("");
    expect(result.code).toBe(0);
  });

  it("vars.sh keeps values with spaces as single words", async () => {
    const result = await run("bash", [
      "-c",
      `source ${bundleDir}/vars.sh; printf '<%s>' "\${PODMAN_BUILD_ARGS[@]}"`,
    ]);
    expect(result.out).toBe("<--build-arg><BASE=x y>");
  });

  it("dispatches exactly the steps the bundle lists", async () => {
    const script = await readFile(join(bundleDir, "provision.sh"), "utf8");
    const cases = script
      .match(/^case "\$step" in\n(.*)\) "step_\$step" ;;$/m)?.[1]
      ?.split("|")
      .map((s) => s.trim());
    expect(cases).toEqual(renderHostBundle(input).steps.map((s) => s.name));
    for (const name of cases ?? []) expect(script).toMatch(new RegExp(`^step_${name}\\(\\) \\{$`, "m"));
  });

  it("refuses an unknown step, naming the usage", async () => {
    const result = await run("bash", [join(bundleDir, "provision.sh"), "everything"]);
    expect(result.code).toBe(1);
    expect(result.out).toMatch(/usage: provision\.sh <packages\|data\|nginx\|/);
  });
});

describe("provision.sh's file installer", () => {
  it("writes a file only when its content or mode changed, and says so", async () => {
    const scratch = join(dir, "put");
    await mkdir(scratch, { recursive: true });
    await writeFile(join(scratch, "a.conf"), "one\n");
    const put = (mode: string) =>
      run("bash", [
        "-c",
        `source ${bundleDir}/provision.sh; if put ${scratch}/a.conf ${scratch}/etc/a.conf ${mode}; then echo CHANGED; else echo SAME; fi`,
      ]);
    const first = await put("0644");
    expect(first.out).toContain(`changed ${scratch}/etc/a.conf`);
    expect(first.out).toContain("CHANGED");
    expect((await put("0644")).out.trim()).toBe("SAME");
    expect((await put("0600")).out).toContain("CHANGED");
    await writeFile(join(scratch, "a.conf"), "two\n");
    expect((await put("0600")).out).toContain("CHANGED");
    expect(await readFile(join(scratch, "etc", "a.conf"), "utf8")).toBe("two\n");
    expect((await put("0600")).out.trim()).toBe("SAME");
    expect(await readdir(join(scratch, "etc"))).toEqual(["a.conf"]);
  });

  it("put_tree installs a whole rendered directory and reports no change on the second run", async () => {
    const target = join(dir, "nginx-etc");
    const tree = () =>
      run("bash", [
        "-c",
        `source ${bundleDir}/provision.sh; if put_tree ${bundleDir}/nginx ${target} 0644; then echo CHANGED; else echo SAME; fi`,
      ]);
    const first = await tree();
    expect(first.out).toContain("CHANGED");
    expect(first.out).toContain(`changed ${target}/nginx.conf`);
    expect((await tree()).out.trim()).toBe("SAME");
    expect(await readFile(join(target, "nginx.conf"), "utf8")).toBe(
      await readFile(join(bundleDir, "nginx", "nginx.conf"), "utf8"),
    );
  });
});

describe("provision.sh's certificate decision", () => {
  it("keeps the lineage only when it is for this domain and this ACME server", async () => {
    const le = join(dir, "letsencrypt");
    const live = join(le, "live", "wagate");
    await mkdir(live, { recursive: true });
    await mkdir(join(le, "renewal"), { recursive: true });
    const cert = join(live, "fullchain.pem");
    await execFileAsync("openssl", [
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
      "/CN=api.example.com",
      "-addext",
      "subjectAltName=DNS:api.example.com",
      "-keyout",
      join(live, "privkey.pem"),
      "-out",
      cert,
    ]);
    const server = "https://acme-v02.api.letsencrypt.org/directory";
    const decide = (domain: string, acmeServer: string) =>
      run("bash", [
        "-c",
        `source ${bundleDir}/provision.sh; LETSENCRYPT_DIR=${le}; CERT_FILE=${cert}; DOMAIN=${domain}; ` +
          `ACME_SERVER_URL=${acmeServer}; if lineage_matches; then echo KEEP; else echo ISSUE; fi`,
      ]).then((r) => r.out.trim());
    expect(await decide("api.example.com", server)).toBe("ISSUE"); // no renewal config: never issued
    await writeFile(join(le, "renewal", "wagate.conf"), `[renewalparams]\nserver = ${server}\n`);
    expect(await decide("api.example.com", server)).toBe("KEEP");
    expect(await decide("api2.example.com", server)).toBe("ISSUE");
    expect(await decide("api.example", server)).toBe("ISSUE");
    expect(await decide("api.example.com", "https://acme-staging-v02.api.letsencrypt.org/directory")).toBe(
      "ISSUE",
    );
  });
});

describe("systemd units", () => {
  it("pass systemd-analyze verify", async () => {
    await requireBinary("systemd-analyze", "systemd");
    // The gateway's unit runs /usr/bin/podman: the verifier refuses a unit whose command is missing.
    await requireBinary("podman", "podman");
    const units = ["wagate-gateway.service", "wagate-backup.service", "wagate-backup.timer"].map((u) =>
      join(bundleDir, "systemd", u),
    );
    const result = await run("systemd-analyze", ["verify", "--man=no", ...units]);
    expect(result.out).toBe("");
    expect(result.code).toBe(0);
    // The verifier does catch a broken unit on this machine (so the pass above means something).
    const broken = join(dir, "wagate-broken.service");
    await writeFile(broken, "[Service]\nTyep=oneshot\n");
    const refused = await run("systemd-analyze", ["verify", "--man=no", broken]);
    expect(refused.code).not.toBe(0);
  });
});

describe("the backup script", () => {
  it("takes a consistent online copy of a WAL database (rows still in the WAL included), keeps the newest 7", async () => {
    await requireBinary("sqlite3", "sqlite3");
    const Database = require("better-sqlite3") as typeof import("better-sqlite3");
    const data = join(dir, "data");
    const backups = join(dir, "backups");
    await mkdir(data, { recursive: true });
    await mkdir(backups, { recursive: true });
    const dbFile = join(data, "wagate.db");
    const db = new Database(dbFile);
    try {
      db.pragma("journal_mode = WAL");
      db.pragma("wal_autocheckpoint = 0"); // keep every row in the WAL: a plain file copy would miss them
      db.exec("CREATE TABLE messages (id INTEGER PRIMARY KEY, body TEXT NOT NULL)");
      const insert = db.prepare("INSERT INTO messages (body) VALUES (?)");
      db.transaction(() => {
        for (let i = 0; i < 1000; i++) insert.run(`message ${i} ✓`);
      })();
      // Nine older copies, oldest first.
      for (let i = 0; i < 9; i++) {
        const old = join(backups, `wagate-2020010${i}T000000Z.db.gz`);
        await writeFile(old, "old");
        await utimes(old, 1_600_000_000 + i, 1_600_000_000 + i);
      }
      // A recording stand-in for the aws cli (S3 is not reachable here): records its arguments.
      const bin = join(dir, "bin");
      await mkdir(bin, { recursive: true });
      await writeFile(join(bin, "aws"), `#!/bin/bash\nprintf '%s\\n' "$@" > ${join(dir, "aws-args")}\n`);
      await chmod(join(bin, "aws"), 0o755);
      const script = join(bundleDir, "backup", "backup.sh");
      const env = {
        PATH: `${bin}:${process.env.PATH}`,
        WAGATE_DATABASE: dbFile,
        WAGATE_BACKUP_DIR: backups,
        BACKUP_BUCKET: "wagate-prod-backups",
        BACKUP_PREFIX: "prod",
        BACKUP_KEEP_LOCAL: "7",
      };
      const result = await run("bash", [script], { env });
      expect(result.code).toBe(0);
      expect(result.out).toMatch(
        /uploaded to s3:\/\/wagate-prod-backups\/prod\/wagate-\d{8}T\d{6}Z-\w{6}\.db\.gz/,
      );
      const kept = (await readdir(backups)).sort();
      expect(kept.length).toBe(7);
      const fresh = kept.filter((f) => !f.startsWith("wagate-2020"));
      expect(fresh.length).toBe(1);
      expect(kept).not.toContain("wagate-20200100T000000Z.db.gz");
      const awsArgs = (await readFile(join(dir, "aws-args"), "utf8")).trim().split("\n");
      expect(awsArgs.slice(0, 3)).toEqual(["s3", "cp", "--only-show-errors"]);
      expect(awsArgs[3]).toBe(join(backups, fresh[0] ?? ""));
      // Restore as the README says: gunzip, then open the copy.
      await execFileAsync("gunzip", ["-k", join(backups, fresh[0] ?? "")]);
      const restored = join(backups, (fresh[0] ?? "").replace(/\.gz$/, ""));
      const count = await execFileAsync("sqlite3", [restored, "SELECT count(*), max(body) FROM messages"]);
      expect(count.stdout.trim()).toBe("1000|message 999 ✓");
      // Without a bucket (test boxes): a local copy only, said plainly.
      const local = await run("bash", [script], { env: { ...env, BACKUP_BUCKET: "" } });
      expect(local.code).toBe(0);
      expect(local.out).toContain("BACKUP_BUCKET is empty: local copy only");
    } finally {
      db.close();
    }
  });
});
