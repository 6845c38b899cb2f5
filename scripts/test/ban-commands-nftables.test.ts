import { execFile } from "node:child_process";
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RATE_LIMIT_JAIL, renderFail2ban, WAF_JAIL } from "../../infra/render/fail2ban.js";
import { ACCESS_LOG_FILE, ERROR_LOG_FILE } from "../../infra/render/nginx.js";
import { requireBinary, type Started, startProcess } from "../lib/processes.js";
import { fail2banCommands, fail2banNftTarget, nftablesCommands } from "../ops/ban-commands.js";

// The commands `suspicious-ips --fail2ban / --nftables` prints, run against what fail2ban really creates: a real
// fail2ban-server with the rendered jails and Debian's nftables ban action (the VM's), in a network namespace of
// its own (unshare), so its nftables table is real but touches nothing of this machine's firewall.

const execFileAsync = promisify(execFile);
let dir: string;
let server: Started | undefined;
let socket: string;
let confDir: string;

/** Runs a command inside the server's network namespace. */
async function inNamespace(command: string): Promise<string> {
  if (!server) throw new Error("fail2ban-server is not running");
  const { stdout } = await execFileAsync("nsenter", [
    `--net=/proc/${server.pid}/ns/net`,
    "--",
    "sh",
    "-c",
    command,
  ]);
  return stdout;
}

const client = (...args: string[]) =>
  execFileAsync("fail2ban-client", ["-c", confDir, "-s", socket, ...args]).then((r) => r.stdout);

beforeAll(async () => {
  await requireBinary("fail2ban-server", "fail2ban");
  await requireBinary("nft", "nftables");
  await requireBinary("unshare", "util-linux");
  dir = await mkdtemp(join(tmpdir(), "wagate-f2b-nft-"));
  const logDir = join(dir, "logs");
  confDir = join(dir, "fail2ban");
  await cp("/etc/fail2ban", confDir, { recursive: true });
  await cp("/etc/fail2ban", confDir, { recursive: true });
  await execFileAsync("mkdir", ["-p", logDir]);
  await writeFile(join(logDir, ACCESS_LOG_FILE), "");
  await writeFile(join(logDir, ERROR_LOG_FILE), "");
  // The VM's files, with the VM's ban action (nftables-multiport); only the log directory differs.
  for (const [name, content] of Object.entries(renderFail2ban({ logDir }))) {
    await writeFile(join(confDir, name), content);
  }
  // No sshd jail here: this machine's journal is not the test's business.
  await writeFile(join(confDir, "jail.d", "zz-test.local"), "[sshd]\nenabled = false\n");
  await writeFile(
    join(confDir, "fail2ban.local"),
    `[Definition]\ndbfile = ${join(dir, "fail2ban.sqlite3")}\nlogtarget = ${join(dir, "fail2ban.log")}\n`,
  );
  socket = join(dir, "fail2ban.sock");
  server = startProcess(
    "fail2ban-server",
    "unshare",
    // Loopback up, as on any host: fail2ban sets up its IPv6 sets only where the host has IPv6 (::1 at least).
    [
      "--net",
      "--",
      "sh",
      "-c",
      'ip link set lo up && exec fail2ban-server -f -x -c "$0" -s "$1" -p "$2"',
      confDir,
      socket,
      join(dir, "fail2ban.pid"),
    ],
    { logFile: join(dir, "fail2ban.out") },
  );
  const deadline = Date.now() + 30_000;
  for (;;) {
    const status = await client("status").catch(() => "");
    if (status.includes(WAF_JAIL) && status.includes(RATE_LIMIT_JAIL)) break;
    if (Date.now() > deadline)
      throw new Error(
        `fail2ban did not start: ${await readFile(join(dir, "fail2ban.log"), "utf8").catch(() => "")}`,
      );
    await sleep(200);
  }
}, 60_000);

afterAll(async () => {
  await server?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("ban commands against fail2ban's real nftables table", () => {
  it("fail2ban-client's ban and the printed nft commands land in the jail's sets, both families", async () => {
    // The printed fail2ban command, run as printed (plus this server's socket and configuration).
    const [f2b] = fail2banCommands(["203.0.113.9"], WAF_JAIL);
    expect(f2b).toBe(`fail2ban-client set ${WAF_JAIL} banip 203.0.113.9`);
    await client(...(f2b ?? "").split(" ").slice(1));
    await client("set", WAF_JAIL, "banip", "2001:db8::9");
    const target = fail2banNftTarget(WAF_JAIL);
    // The printed nft commands, run verbatim by a shell in the server's namespace.
    for (const command of nftablesCommands(["198.51.100.7", "2001:db8::77"], target))
      await inNamespace(command);
    const v4 = await inNamespace(`nft list set ${target.table} ${target.set4}`);
    const v6 = await inNamespace(`nft list set ${target.table} ${target.set6}`);
    expect(v4).toContain("203.0.113.9");
    expect(v4).toContain("198.51.100.7");
    expect(v6).toContain("2001:db8::9");
    expect(v6).toContain("2001:db8::77");
    // And the set is the one fail2ban's rule drops traffic from.
    expect(await inNamespace("nft list chain inet f2b-table f2b-chain")).toMatch(
      new RegExp(`ip saddr @${target.set4} reject`),
    );
  });

  it("a jail that has banned nothing yet still has its sets: the printed command works at any time", async () => {
    const target = fail2banNftTarget(RATE_LIMIT_JAIL);
    for (const command of nftablesCommands(["192.0.2.55", "2001:db8::55"], target))
      await inNamespace(command);
    expect(await inNamespace(`nft list set ${target.table} ${target.set4}`)).toContain("192.0.2.55");
    expect(await inNamespace(`nft list set ${target.table} ${target.set6}`)).toContain("2001:db8::55");
  });
});
