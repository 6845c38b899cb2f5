import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { GATEWAY_ENV_FILE } from "../../../infra/render/bundle.js";
import { RATE_LIMIT_JAIL } from "../../../infra/render/fail2ban.js";
import {
  BACKUP_DIR,
  BACKUP_SERVICE,
  BACKUP_TIMER,
  GATEWAY_UID,
  GATEWAY_UNIT,
} from "../../../infra/render/systemd.js";
import { type CheckResult, runSmoke } from "../../ops/smoke-checks.js";
import { BOX_ADDRESS, BOX_DOMAIN, FLOOD_ADDRESS } from "./constants.js";
import { boxRequest } from "./https.js";
import type { BoxShell } from "./remote.js";

// What must hold on the box after provisioning, beyond the step that says "healthy": the holdout-style smoke
// checks against the box's nginx, the container's hardening, a ban in the box's nftables, a restorable backup,
// and no failed unit. Each yields a line; none throws for a failing check.

const execFileAsync = promisify(execFile);

export interface BoxCheckContext {
  sh: BoxShell;
  /** Pebble's issuing root: the only CA the checks trust. */
  ca: string;
  token: string;
  workDir: string;
}

const pass = (name: string, detail: string): CheckResult => ({ name, status: "pass", detail });
const fail = (name: string, detail: string): CheckResult => ({ name, status: "fail", detail });

async function guarded(name: string, check: () => Promise<CheckResult>): Promise<CheckResult> {
  try {
    return await check();
  } catch (error) {
    return fail(name, (error as Error).message.split("\n").slice(0, 3).join(" | "));
  }
}

export async function smokeChecks(ctx: BoxCheckContext): Promise<CheckResult[]> {
  return runSmoke({ url: `https://${BOX_DOMAIN}`, address: BOX_ADDRESS, ca: ctx.ca, token: ctx.token });
}

export function containerHardening(ctx: BoxCheckContext): Promise<CheckResult> {
  const name = "container-hardening";
  return guarded(name, async () => {
    const out = await ctx.sh(
      [
        `podman --runtime crun --cgroup-manager cgroupfs inspect wagate-gateway --format '{{.Config.User}}|{{.HostConfig.ReadonlyRootfs}}|{{.EffectiveCaps}}|{{.HostConfig.SecurityOpt}}'`,
        `stat -c '%a %U' ${GATEWAY_ENV_FILE}`,
        `systemctl show ${GATEWAY_UNIT} -p Restart --value`,
        // The gateway's listener: loopback only.
        `ss -Hltn 'sport = :3000' | awk '{print $4}' | sort -u | paste -sd,`,
        `ps -o uid= -p $(pgrep -f 'node gateway/dist/main.js' | head -1)`,
      ].join("; echo; "),
    );
    const [inspect, envMode, restart, listen, uid] = out
      .split("\n")
      .map((l) => l.trim())
      .filter(Boolean);
    const [user, readOnly, caps, secOpt] = (inspect ?? "").split("|");
    const problems: string[] = [];
    if (user !== `${GATEWAY_UID}:${GATEWAY_UID}`) problems.push(`runs as ${user}`);
    if (readOnly !== "true") problems.push("root filesystem writable");
    if (caps !== "[]") problems.push(`capabilities ${caps}`);
    if (!secOpt?.includes("no-new-privileges")) problems.push("no no-new-privileges");
    if (envMode !== "600 root") problems.push(`env file is ${envMode}`);
    if (restart !== "on-failure") problems.push(`Restart=${restart}`);
    if (listen !== "127.0.0.1:3000") problems.push(`listens on ${listen}`);
    if (uid !== String(GATEWAY_UID)) problems.push(`process uid ${uid}`);
    return problems.length
      ? fail(name, problems.join("; "))
      : pass(
          name,
          `uid ${user}, read-only root, no capabilities, env file 0600 root, Restart=on-failure, ${listen}`,
        );
  });
}

/** A flood from a second address: fail2ban's rate-limit jail must ban it in the box's nftables. */
export function floodBanned(ctx: BoxCheckContext): Promise<CheckResult> {
  const name = "fail2ban-bans-flood";
  return guarded(name, async () => {
    let limited = 0;
    let sent = 0;
    const worker = async () => {
      while (sent < 600) {
        sent++;
        const r = await boxRequest({
          address: BOX_ADDRESS,
          host: BOX_DOMAIN,
          ca: ctx.ca,
          path: "/healthz",
          localAddress: FLOOD_ADDRESS,
        }).catch(() => ({ status: 0 }));
        if (r.status === 429) limited++;
        if (r.status === 0) return; // banned: the connection no longer gets through
      }
    };
    await Promise.all(Array.from({ length: 10 }, worker));
    for (let i = 0; i < 60; i++) {
      const rules = await ctx.sh("nft list ruleset");
      if (rules.includes(FLOOD_ADDRESS)) {
        const status = await ctx.sh(`fail2ban-client status ${RATE_LIMIT_JAIL} | grep -i 'banned ip list'`);
        const after = await boxRequest({
          address: BOX_ADDRESS,
          host: BOX_DOMAIN,
          ca: ctx.ca,
          path: "/healthz",
          localAddress: FLOOD_ADDRESS,
        }).then(
          (r) => `answered ${r.status}`,
          (e: Error) => `refused (${e.message})`,
        );
        return after.startsWith("refused")
          ? pass(
              name,
              `${limited} x 429 of ${sent}; ${status.trim()}; in nftables; the next request is ${after}`,
            )
          : fail(name, `${FLOOD_ADDRESS} is in nftables but its next request ${after}`);
      }
      await sleep(500);
    }
    return fail(
      name,
      `${limited} x 429 of ${sent} requests, and ${FLOOD_ADDRESS} is not in the box's nftables after 30 s`,
    );
  });
}

/** A message through the API, one backup run, and the copy restored on this machine holds the message. */
export function backupRestorable(ctx: BoxCheckContext): Promise<CheckResult> {
  const name = "backup-restorable";
  return guarded(name, async () => {
    const timers = await ctx.sh(`systemctl list-timers --all --no-legend ${BACKUP_TIMER}`);
    if (!timers.includes(BACKUP_TIMER))
      return fail(name, `${BACKUP_TIMER} is not listed by systemctl list-timers`);
    const sent = await boxRequest({
      address: BOX_ADDRESS,
      host: BOX_DOMAIN,
      ca: ctx.ca,
      path: "/v1/messages",
      method: "POST",
      headers: { authorization: `Bearer ${ctx.token}`, "content-type": "application/json" },
      body: JSON.stringify({ type: "text", to: "+4915112345678", text: { body: "box backup check" } }),
    });
    const id = (JSON.parse(sent.body || "{}") as { id?: string }).id;
    if (sent.status !== 202 || !id)
      return fail(name, `POST /v1/messages answered ${sent.status}: ${sent.body.slice(0, 200)}`);
    await ctx.sh(`systemctl start ${BACKUP_SERVICE}`);
    const latest = (await ctx.sh(`ls -t ${BACKUP_DIR}/wagate-*.db.gz | head -1`)).trim();
    if (!latest) return fail(name, `no copy in ${BACKUP_DIR} after ${BACKUP_SERVICE}`);
    const gz = join(ctx.workDir, "restore.db.gz");
    await writeFile(gz, Buffer.from((await ctx.sh(`base64 -w0 ${latest}`)).trim(), "base64"));
    await execFileAsync("gunzip", ["-f", gz]);
    const db = gz.replace(/\.gz$/, "");
    const { stdout: integrity } = await execFileAsync("sqlite3", [db, "PRAGMA integrity_check;"]);
    const { stdout: found } = await execFileAsync("sqlite3", [
      db,
      `SELECT count(*) FROM messages WHERE id = '${id.replace(/'/g, "")}';`,
    ]);
    if (integrity.trim() !== "ok") return fail(name, `restored copy: integrity_check ${integrity.trim()}`);
    if (found.trim() !== "1") return fail(name, `restored copy lacks message ${id}`);
    return pass(name, `${BACKUP_TIMER} listed; ${latest} restored here: integrity ok, holds message ${id}`);
  });
}

export function noFailedUnits(ctx: BoxCheckContext): Promise<CheckResult> {
  const name = "no-failed-units";
  return guarded(name, async () => {
    const failed = (await ctx.sh("systemctl --failed --no-legend --plain")).trim();
    return failed ? fail(name, failed.split("\n").join("; ")) : pass(name, "systemctl --failed is empty");
  });
}

export function fail2banActive(ctx: BoxCheckContext): Promise<CheckResult> {
  const name = "fail2ban-active";
  return guarded(name, async () => {
    const state = (await ctx.sh("systemctl is-active fail2ban", { check: false })).trim();
    const jails = (await ctx.sh("fail2ban-client status | sed -n 's/.*Jail list:\\s*//p'")).trim();
    return state === "active" && jails.includes(RATE_LIMIT_JAIL)
      ? pass(name, `active; jails ${jails}`)
      : fail(name, `fail2ban is ${state}; jails ${jails || "none"}`);
  });
}

/** Logins as a user that does not exist, from a second address: fail2ban's sshd jail (journal) must count them. */
export function sshdJailCounts(ctx: BoxCheckContext): Promise<CheckResult> {
  const name = "fail2ban-sshd-journal";
  return guarded(name, async () => {
    for (let i = 0; i < 3; i++)
      await execFileAsync("ssh", [
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "ConnectTimeout=5",
        "-b",
        FLOOD_ADDRESS,
        `nosuchuser@${BOX_ADDRESS}`,
        "true",
      ]).catch(() => undefined);
    for (let i = 0; i < 80; i++) {
      const failed = Number(
        (await ctx.sh("fail2ban-client status sshd | sed -n 's/.*Total failed:\\s*//p'")).trim() || "0",
      );
      if (failed >= 1) return pass(name, `the sshd jail read ${failed} failed login(s) from the journal`);
      await sleep(250);
    }
    return fail(name, "the sshd jail counted no failed login after 20 s");
  });
}
