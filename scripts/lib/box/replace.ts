import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { type FakeGraph, graphError } from "../../../gateway/test/support/fake-graph.js";
import type { RemoteAction } from "../../../infra/plan/provision.js";
import type { CheckResult } from "../../ops/smoke-checks.js";
import { type BoxCheckContext, noFailedUnits } from "./checks.js";
import { BOX_ADDRESS, BOX_DOMAIN } from "./constants.js";
import { watchDowntime } from "./downtime.js";
import { executeActions, type Secrets } from "./executor.js";
import { boxRequest, servedCertificateSerial } from "./https.js";
import type { BootedBox, PreparedBox } from "./machine.js";
import { type BoxShell, boxShell } from "./remote.js";
import { removeRoot } from "./root.js";

// `npm run box -- --replace`: what an OS upgrade or a resize does to the VM. With an OTP pending and a message
// accepted but not sent yet (the fake Graph API answers 503 meanwhile), the box is powered off and a brand-new
// root from bare Debian is booted against the same data disk and provisioned with the whole remote sequence, as
// a new instance is. Then: the message is sent, exactly once; the OTP verifies; the certificate served is the
// same one (same serial: nothing was re-issued); and the gateway's downtime, as a client saw it, is measured.

export interface ReplaceInput {
  old: BootedBox;
  /** Copies and keys the new root (done while the old box still serves, as AWS prepares a new instance). */
  prepareNew: () => Promise<PreparedBox>;
  actions: readonly RemoteAction[];
  secrets: Secrets;
  /** The box's own preparation before an action (the locally made base image), given the new box's shell. */
  before: (sh: BoxShell) => Readonly<Record<string, () => Promise<void>>>;
  graph: FakeGraph;
  ca: string;
  token: string;
  workDir: string;
  logFile?: string;
  say: (line: string) => void;
}

export interface ReplaceOutcome {
  box: BootedBox;
  checks: CheckResult[];
  /** Longest stretch without a 200 from https://<domain>/healthz, as a client saw it. */
  downtimeSeconds: number;
  /** The new box's whole remote sequence. */
  provisionSeconds: number;
  /** The message, the OTP and the certificate all survived. */
  dataKept: boolean;
}

const pass = (name: string, detail: string): CheckResult => ({ name, status: "pass", detail });
const fail = (name: string, detail: string): CheckResult => ({ name, status: "fail", detail });

async function until<T>(what: string, timeoutMs: number, probe: () => T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = probe();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await sleep(200);
  }
}

/** The JSON of an answer; anything else names the request, its status and the start of its body. */
function json<T>(what: string, r: { status: number; body: string }): T {
  try {
    return JSON.parse(r.body) as T;
  } catch {
    throw new Error(
      `${what} answered ${r.status} with no JSON: ${r.body.slice(0, 200).replace(/\s+/g, " ")}`,
    );
  }
}

const bodyText = (body: Record<string, unknown>) => (body.text as { body?: string } | undefined)?.body;

export async function replaceBox(input: ReplaceInput): Promise<ReplaceOutcome> {
  const { graph, say } = input;
  const api = (path: string, method = "GET", body?: unknown) =>
    boxRequest({
      address: BOX_ADDRESS,
      host: BOX_DOMAIN,
      ca: input.ca,
      path,
      method,
      headers: { authorization: `Bearer ${input.token}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });

  // An OTP issued (its code reached the fake Graph) and not verified yet.
  const otpTo = "+4915112340001";
  const otp = await api("/v1/otp", "POST", { to: otpTo });
  if (otp.status !== 202) throw new Error(`POST /v1/otp answered ${otp.status}: ${otp.body.slice(0, 200)}`);
  const code = await until("the OTP's template at the fake Graph", 30_000, () => {
    const sent = graph.accepted().find((b) => b.type === "template" && String(b.to).endsWith(otpTo.slice(1)));
    const components = (sent?.template as { components?: Array<{ parameters?: Array<{ text?: string }> }> })
      ?.components;
    return components?.[0]?.parameters?.[0]?.text;
  });

  // A message accepted while Meta is unavailable: queued, retried, not sent.
  graph.script(
    ...Array.from({ length: 10_000 }, () => graphError(2, 503, "(#2) Service temporarily unavailable")),
  );
  const nonce = `kept across the replacement ${randomBytes(6).toString("base64url")}`;
  const accepted = await api("/v1/messages", "POST", {
    type: "text",
    to: "+4915112340002",
    text: { body: nonce },
  });
  if (accepted.status === 403) {
    const why = await boxShell(input.old.sshArgs)(
      "grep -h 'ModSecurity: Access denied' /var/log/nginx/error.log | tail -1",
      {
        check: false,
      },
    );
    throw new Error(`POST /v1/messages refused by the WAF: ${why.slice(0, 600)}`);
  }
  const messageId = json<{ id?: string }>("POST /v1/messages", accepted).id;
  if (accepted.status !== 202 || !messageId)
    throw new Error(`POST /v1/messages answered ${accepted.status}: ${accepted.body.slice(0, 200)}`);
  await until("the message's first (refused) attempt", 30_000, () =>
    graph.requests.some((r) => bodyText((r.body ?? {}) as Record<string, unknown>) === nonce)
      ? true
      : undefined,
  );
  const serialBefore = await servedCertificateSerial({
    address: BOX_ADDRESS,
    host: BOX_DOMAIN,
    ca: input.ca,
  });

  const prepared = await input.prepareNew();
  const watch = watchDowntime(async () => {
    const r = await boxRequest({ address: BOX_ADDRESS, host: BOX_DOMAIN, ca: input.ca, path: "/healthz" });
    return r.status === 200;
  });
  say("box: replacing: powering the box off, booting a brand-new root against the same data disk");
  await input.old.powerOff();
  const box = await prepared.start();
  const sh = boxShell(box.sshArgs);
  const started = performance.now();
  const run = await executeActions(input.actions, {
    sshArgs: box.sshArgs,
    secrets: input.secrets,
    before: input.before(sh),
    logFile: input.logFile,
    say,
  });
  const provisionSeconds = (performance.now() - started) / 1000;
  await watch.recovered(60_000);
  const { downtimeSeconds } = await watch.stop();
  await removeRoot(input.old.dir);
  say(
    `box: replaced: provisioned in ${provisionSeconds.toFixed(1)} s, gateway down ${downtimeSeconds.toFixed(1)} s`,
  );

  const checks: CheckResult[] = [];
  const dataOutput = run.outcomes.find((o) => o.id === "data")?.output ?? "";
  checks.push(
    /formatting/.test(dataOutput) || !/mounting/.test(dataOutput)
      ? fail("replace-mounts-kept-volume", dataOutput.trim().split("\n").join(" | ") || "no output")
      : pass(
          "replace-mounts-kept-volume",
          "the data step mounted the existing filesystem, formatted nothing",
        ),
  );

  // Meta is back: the queued message goes out from the new box, once.
  graph.clearScript();
  const sentOnce = await (async () => {
    const name = "replace-message-sent-once";
    try {
      await until("the message at the fake Graph", 120_000, () =>
        graph.accepted().some((b) => bodyText(b) === nonce) ? true : undefined,
      );
      // Long enough for a duplicate to show up (the outbox retries every few seconds here).
      await sleep(5_000);
      const copies = graph.accepted().filter((b) => bodyText(b) === nonce).length;
      const status = json<{ status?: string }>(
        "GET /v1/messages/:id",
        await api(`/v1/messages/${messageId}`),
      );
      return copies === 1 && status.status !== "queued" && status.status !== "failed"
        ? pass(
            name,
            `message ${messageId} accepted before the replacement, sent once after it (${status.status})`,
          )
        : fail(name, `message ${messageId}: ${copies} copies at the fake Graph, status ${status.status}`);
    } catch (error) {
      return fail(name, (error as Error).message);
    }
  })();
  checks.push(sentOnce);

  const verified = await api("/v1/otp/verify", "POST", { to: otpTo, code });
  checks.push(
    verified.status === 200
      ? pass("replace-otp-verifies", "the OTP issued before the replacement verifies after it")
      : fail(
          "replace-otp-verifies",
          `POST /v1/otp/verify answered ${verified.status}: ${verified.body.slice(0, 200)}`,
        ),
  );

  const serialAfter = await servedCertificateSerial({
    address: BOX_ADDRESS,
    host: BOX_DOMAIN,
    ca: input.ca,
  }).catch((e: Error) => `none (${e.message})`);
  checks.push(
    serialAfter === serialBefore
      ? pass(
          "replace-certificate-kept",
          `same certificate served (serial ${serialBefore}): nothing re-issued`,
        )
      : fail("replace-certificate-kept", `serial ${serialBefore} before, ${serialAfter} after`),
  );
  const ctx: BoxCheckContext = { sh, ca: input.ca, token: input.token, workDir: input.workDir };
  checks.push(await noFailedUnits(ctx));
  const dataKept = checks.slice(0, 4).every((c) => c.status === "pass");
  return { box, checks, downtimeSeconds, provisionSeconds, dataKept };
}
