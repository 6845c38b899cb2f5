import { execFile } from "node:child_process";
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "node:tls";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  nginxVersion,
  type RunningNginx,
  startNginx,
  writeSelfSignedCertificate,
} from "../../scripts/lib/nginx.js";
import { type Pebble, startPebble } from "../../scripts/lib/pebble.js";
import { freePort, requireBinary } from "../../scripts/lib/processes.js";
import {
  type CertbotDirs,
  certbotDirArgs,
  certbotIssueArgs,
  certbotRenewArgs,
  renderCertbotCliIni,
  renderDeployHook,
} from "../render/certbot.js";
import { CERT_NAME, type EdgeLayout, localLayout } from "../render/layout.js";
import { renderNginx } from "../render/nginx.js";
import { rateLimitSchema, wafSchema } from "../render/settings.js";

// The certbot configuration the VM gets, run for real against Pebble: the rendered cli.ini is a valid certbot
// config that selects the ACME server, issuance goes through nginx's webroot, a renewal that is not due does
// nothing, and a forced one runs the rendered deploy hook (and only then).

const execFileAsync = promisify(execFile);
const DOMAIN = "gateway.test";

let dir: string;
let upstream: Server;
let layout: EdgeLayout;
let nginx: RunningNginx | undefined;
let pebble: Pebble | undefined;
let dirs: CertbotDirs;
let cliIni: string;
let hookLog: string;

async function certbot(args: string[]): Promise<string> {
  const { stdout, stderr } = await execFileAsync(
    "certbot",
    ["--config", cliIni, ...args, ...certbotDirArgs(dirs)],
    { env: { ...process.env, REQUESTS_CA_BUNDLE: pebble?.listenerCaFile ?? "" }, timeout: 120_000 },
  );
  return stdout + stderr;
}

function servedSerial(ca: string): Promise<{ serial: string; authorized: boolean; issuer: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(
      { host: "127.0.0.1", port: layout.httpsPort, servername: DOMAIN, ca, rejectUnauthorized: false },
      () => {
        const cert = socket.getPeerX509Certificate();
        if (!cert) return reject(new Error("no certificate served"));
        resolve({ serial: cert.serialNumber, authorized: socket.authorized, issuer: cert.issuer });
        socket.end();
      },
    );
    socket.on("error", reject);
  });
}

beforeAll(async () => {
  await requireBinary("certbot", "certbot");
  dir = await mkdtemp(join(tmpdir(), "wagate-acme-"));
  await chmod(dir, 0o755); // nginx's workers serve the webroot from below it
  upstream = createServer((_req, res) => res.end('{"ok":true}\n'));
  const upstreamPort = await freePort();
  await new Promise<void>((resolve) => upstream.listen(upstreamPort, "127.0.0.1", resolve));
  layout = localLayout(join(dir, "edge"), {
    http: await freePort(),
    https: await freePort(),
    upstream: upstreamPort,
  });
  await writeSelfSignedCertificate(layout, DOMAIN);
  nginx = await startNginx({
    layout,
    files: renderNginx({
      domain: DOMAIN,
      rateLimit: rateLimitSchema.parse({}),
      waf: wafSchema.parse({}),
      layout,
      workerProcesses: 1,
      nginxVersion: await nginxVersion(),
    }),
  });
  pebble = await startPebble({ dir: join(dir, "pebble"), httpPort: layout.httpPort });
  dirs = {
    configDir: layout.letsencryptDir,
    workDir: join(dir, "certbot-work"),
    logsDir: join(dir, "certbot-logs"),
  };
  cliIni = join(dir, "cli.ini");
  await writeFile(cliIni, renderCertbotCliIni({ email: "ops@example.com", acmeServer: pebble.directoryUrl }));
  hookLog = join(dir, "hook.log");
  const hook = join(layout.letsencryptDir, "renewal-hooks", "deploy", "wagate-reload-nginx");
  await execFileAsync("install", ["-D", "-m", "0755", "/dev/null", hook]);
  await writeFile(
    hook,
    renderDeployHook({
      reloadCommand: `echo reload >> '${hookLog}'; kill -HUP "$(cat '${layout.pidFile}')"`,
    }),
  );
}, 60_000);

afterAll(async () => {
  await pebble?.stop();
  await nginx?.stop();
  await new Promise((resolve) => upstream?.close(resolve));
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("certbot with the rendered configuration, against Pebble, through nginx", () => {
  it("issues through the webroot with the server and email from cli.ini; the first issuance runs no hook", async () => {
    if (!pebble) throw new Error("pebble did not start");
    // The VM's sequence: drop the bootstrap certificate, issue, reload.
    await rm(join(layout.letsencryptDir, "live", CERT_NAME), { recursive: true, force: true });
    const args = certbotIssueArgs({
      domain: DOMAIN,
      email: "ops@example.com",
      acmeServer: pebble.directoryUrl,
      webroot: layout.acmeWebroot,
    });
    // Server and email left to cli.ini: it is what a hand-run certbot on the VM uses.
    const fromIni = args.filter(
      (_a, i) =>
        !["--server", "--email"].includes(args[i] ?? "") &&
        !["--server", "--email"].includes(args[i - 1] ?? ""),
    );
    await certbot(fromIni);
    await nginx?.reload();
    const served = await servedSerial(pebble.issuerRootPem);
    expect(served.authorized).toBe(true);
    expect(served.issuer).toMatch(/Pebble/);
    const renewal = await readFile(join(layout.letsencryptDir, "renewal", `${CERT_NAME}.conf`), "utf8");
    expect(renewal).toContain(`server = ${pebble.directoryUrl}`);
    expect(renewal).toContain(`webroot_path = ${layout.acmeWebroot}`);
    expect(renewal).toContain("key_type = ecdsa");
    await expect(stat(hookLog)).rejects.toThrow();
  });

  it("a renewal that is not due changes nothing and runs no hook", async () => {
    if (!pebble) throw new Error("pebble did not start");
    const before = await servedSerial(pebble.issuerRootPem);
    const out = await certbot(certbotRenewArgs(CERT_NAME, { immediately: true }));
    expect(out).toMatch(/not yet due for renewal/);
    await expect(stat(hookLog)).rejects.toThrow();
    expect((await servedSerial(pebble.issuerRootPem)).serial).toBe(before.serial);
  });

  it("a forced renewal runs the deploy hook, which reloads nginx onto the new certificate", async () => {
    if (!pebble) throw new Error("pebble did not start");
    const before = await servedSerial(pebble.issuerRootPem);
    const master = nginx?.pid;
    await certbot(certbotRenewArgs(CERT_NAME, { force: true, immediately: true }));
    expect((await readFile(hookLog, "utf8")).trim()).toBe("reload");
    let after = before;
    for (let i = 0; i < 100 && after.serial === before.serial; i++) {
      await new Promise((r) => setTimeout(r, 100));
      after = await servedSerial(pebble.issuerRootPem);
    }
    expect(after.serial).not.toBe(before.serial);
    expect(after.authorized).toBe(true);
    expect(nginx?.pid).toBe(master);
    expect(nginx?.child.exitCode).toBeNull();
  });
});
