import { execFile } from "node:child_process";
import { createHmac, randomUUID } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join, posix } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { ADMIN_CLI_PATH } from "../../../infra/render/admin-cli.js";
import { EDGE_IDENTITY_KEY_FILE, GATEWAY_ENV_FILE } from "../../../infra/render/bundle.js";
import { IDENTITY_KEY_OBJECT } from "../../../infra/render/edge-js.js";
import { RATE_LIMIT_JAIL } from "../../../infra/render/fail2ban.js";
import { vmLayout } from "../../../infra/render/layout.js";
import { ACCESS_LOG_FILE } from "../../../infra/render/nginx.js";
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

/** An HS256 token signed with `secret` (what the gateway's mintToken makes, with any claims, expired ones too). */
export function signedToken(secret: string, claims: Record<string, unknown>): string {
  const part = (v: object) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const unsigned = `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}`;
  return `${unsigned}.${createHmac("sha256", secret).update(unsigned).digest("base64url")}`;
}

/** Who answered a request: its status, and the access log's `edge` and `upstream_status` for its request id. */
export interface EdgeOutcome {
  status: number;
  code: string;
  /** The access log's `edge` field: "auth" for the edge's own 401. */
  edge: string;
  /** The gateway's status; "" when the edge answered without asking it. */
  upstream: string;
}

const ACCESS_LOG = posix.join(vmLayout().logDir, ACCESS_LOG_FILE);

/** GET /v1/messages/<unknown id> with `token` (a valid one that may read messages: the gateway's 404). */
export async function edgeOutcome(ctx: BoxCheckContext, token: string | undefined): Promise<EdgeOutcome> {
  const res = await boxRequest({
    address: BOX_ADDRESS,
    host: BOX_DOMAIN,
    ca: ctx.ca,
    path: `/v1/messages/${randomUUID()}`,
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
  });
  const requestId = String(res.headers["x-request-id"] ?? "");
  if (!/^[0-9a-f]{32}$/.test(requestId)) throw new Error(`answer ${res.status} without an X-Request-Id`);
  let code = "";
  try {
    code = String((JSON.parse(res.body) as { error?: { code?: string } }).error?.code ?? "");
  } catch {
    code = `not JSON: ${res.body.slice(0, 60)}`;
  }
  // nginx writes the log line after the answer: wait for it a moment.
  for (let i = 0; i < 20; i++) {
    const line = (
      await ctx.sh(`grep -F '"request_id":"${requestId}"' ${ACCESS_LOG} | tail -1`, { check: false })
    ).trim();
    if (line) {
      const entry = JSON.parse(line) as { edge?: string; upstream_status?: string };
      return { status: res.status, code, edge: entry.edge ?? "", upstream: entry.upstream_status ?? "" };
    }
    await sleep(100);
  }
  throw new Error(`no access log line for request ${requestId} (answered ${res.status})`);
}

const refusedAtEdge = (o: EdgeOutcome) =>
  o.status === 401 && o.code === "unauthorized" && o.edge === "auth" && o.upstream === "";
const passedToGateway = (o: EdgeOutcome, status: number) =>
  o.status === status && o.upstream === String(status);
const described = (o: EdgeOutcome) =>
  `${o.status} ${o.code || "-"} (edge "${o.edge}", gateway ${o.upstream ? o.upstream : "not asked"})`;

/**
 * Identity first on the provisioned host: the key file is root's alone and nginx preloads it; a token from
 * `sudo wagate token` reaches the gateway; missing, forged and expired tokens get the edge's JSON 401, which
 * the access log records as the edge's ("auth", no upstream status), not the gateway's.
 */
export function edgeVerifiesTokens(ctx: BoxCheckContext, apiSecret: string): Promise<CheckResult> {
  const name = "edge-identity";
  return guarded(name, async () => {
    const problems: string[] = [];
    const mode = (await ctx.sh(`stat -c '%a %U:%G' ${EDGE_IDENTITY_KEY_FILE}`)).trim();
    if (mode !== "600 root:root") problems.push(`${EDGE_IDENTITY_KEY_FILE} is ${mode}`);
    const preload = `js_preload_object ${IDENTITY_KEY_OBJECT} from ${EDGE_IDENTITY_KEY_FILE};`;
    const conf = await ctx.sh(`grep -rhF '${preload}' ${vmLayout().confDir} || true`);
    if (!conf.includes(preload)) problems.push("nginx does not preload the key file");
    const valid = (
      await ctx.sh(`${ADMIN_CLI_PATH} token --sub box-edge --scope messages:read --ttl 600 2>/dev/null`)
    ).trim();
    const now = Math.floor(Date.now() / 1000);
    const claims = {
      sub: "box-edge",
      scope: "messages:read",
      iss: "wagate",
      aud: "wagate",
      jti: randomUUID(),
    };
    const tokens: [string, string | undefined][] = [
      ["none", undefined],
      // One signature character changed (not the last: its low bits are padding).
      ["forged", `${valid.slice(0, -10)}${valid.at(-10) === "A" ? "B" : "A"}${valid.slice(-9)}`],
      ["expired", signedToken(apiSecret, { ...claims, iat: now - 7200, exp: now - 3600 })],
    ];
    const seen: string[] = [];
    for (const [kind, token] of tokens) {
      const o = await edgeOutcome(ctx, token);
      seen.push(`${kind} ${o.status}`);
      if (!refusedAtEdge(o)) problems.push(`${kind} token: ${described(o)}, not the edge's 401`);
    }
    const accepted = await edgeOutcome(ctx, valid);
    if (!passedToGateway(accepted, 404))
      problems.push(`sudo wagate token's token: ${described(accepted)}, not the gateway's 404`);
    return problems.length
      ? fail(name, problems.join("; "))
      : pass(
          name,
          `key file 0600 root, preloaded; ${seen.join(", ")} at the edge; sudo wagate token's token reaches the gateway (404 for an unknown id)`,
        );
  });
}

/**
 * During an API_SECRET rotation the edge lets both keys' tokens through (the gateway, verifying with the new
 * secret only, refuses the previous one's with its own 401); once API_SECRET_PREVIOUS is removed, the edge
 * refuses the previous key's tokens itself.
 */
export function rotationAtEdge(
  ctx: BoxCheckContext,
  name: string,
  tokens: { previous: string; current: string },
  previousKept: boolean,
): Promise<CheckResult> {
  return guarded(name, async () => {
    const previous = await edgeOutcome(ctx, tokens.previous);
    const current = await edgeOutcome(ctx, tokens.current);
    const problems: string[] = [];
    if (!passedToGateway(current, 404)) problems.push(`the new key's token: ${described(current)}`);
    if (previousKept ? !passedToGateway(previous, 401) : !refusedAtEdge(previous))
      problems.push(`the previous key's token: ${described(previous)}`);
    return problems.length
      ? fail(name, problems.join("; "))
      : pass(name, `new key's token ${described(current)}; previous key's ${described(previous)}`);
  });
}
