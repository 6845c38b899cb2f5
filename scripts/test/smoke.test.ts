import { randomBytes } from "node:crypto";
import { copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mintToken } from "../../gateway/src/auth/index.js";
import { localLayout } from "../../infra/render/layout.js";
import { ACCESS_LOG_FILE, renderNginx } from "../../infra/render/nginx.js";
import { rateLimitSchema, wafSchema } from "../../infra/render/settings.js";
import { nginxVersion, type RunningNginx, startNginx } from "../lib/nginx.js";
import { freePort, type Started, startProcess, stopAll, waitForPort } from "../lib/processes.js";
import { ROOT, runScript } from "./helpers/run-script.js";
import { makeTestCertificates, type TestCertificates } from "./helpers/test-ca.js";

// smoke against a real edge: nginx with the configuration infra/render/nginx.ts renders for the VM (WAF, rate
// limits, TLS, headers), in front of the real gateway (sandbox transport), with certificates from a throwaway
// CA. A second nginx, deliberately weakened, shows that each check can fail.

const DOMAIN = "gateway.test";
const API_SECRET = randomBytes(32).toString("hex");

let dir: string;
let certs: TestCertificates;
let gatewayPort: number;
const processes: Started[] = [];

interface Edge {
  nginx: RunningNginx;
  http: number;
  https: number;
  logDir: string;
}

async function startEdge(name: string, weaken: (conf: string) => string, wafEnabled = true): Promise<Edge> {
  const [http, https] = [await freePort(), await freePort()];
  const layout = localLayout(join(dir, name), { http, https, upstream: gatewayPort });
  const files = renderNginx({
    domain: DOMAIN,
    rateLimit: rateLimitSchema.parse({}),
    waf: wafSchema.parse({ enabled: wafEnabled }),
    layout,
    nginxVersion: await nginxVersion(),
  });
  files["nginx.conf"] = weaken(files["nginx.conf"] as string);
  for (const [from, to] of [
    [certs.cert, layout.certificate],
    [certs.key, layout.certificateKey],
  ] as const) {
    await mkdir(dirname(to), { recursive: true });
    await copyFile(from, to);
  }
  const nginx = await startNginx({ layout, files });
  processes.push(nginx);
  return { nginx, http, https, logDir: layout.logDir };
}

function smokeArgs(edge: Edge): string[] {
  return [
    `https://${DOMAIN}:${edge.https}`,
    "--http-url",
    `http://${DOMAIN}:${edge.http}`,
    "--resolve",
    `${DOMAIN}:${edge.https}:127.0.0.1`,
    "--ca",
    certs.caCert,
  ];
}

function lines(stdout: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const line of stdout.trim().split("\n")) {
    const m = /^(PASS|FAIL|SKIP)\s+(\S+)\s+/.exec(line);
    if (m) map.set(m[2] as string, m[1] as string);
  }
  return map;
}

let good: Edge;
let weak: Edge;
let tokenFile: string;
let readOnlyAdminTokenFile: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "wagate-smoke-"));
  certs = await makeTestCertificates(join(dir, "pki"), DOMAIN);
  gatewayPort = await freePort();
  const gateway = startProcess("gateway", process.execPath, ["--import", "tsx", "gateway/src/main.ts"], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH,
      API_SECRET,
      PORT: String(gatewayPort),
      DATABASE_PATH: join(dir, "gateway.db"),
      SANDBOX_OUTBOX_PATH: join(dir, "outbox.jsonl"),
      LOG_LEVEL: "warn",
    },
    logFile: join(dir, "gateway.log"),
  });
  processes.push(gateway);
  await Promise.race([
    waitForPort(gatewayPort, "127.0.0.1", 30_000),
    gateway.exited.then((code) =>
      Promise.reject(new Error(`gateway exited (${code}); see ${dir}/gateway.log`)),
    ),
  ]);
  good = await startEdge("good", (conf) => conf);
  weak = await startEdge(
    "weak",
    (conf) =>
      conf
        .replace("ssl_protocols TLSv1.2 TLSv1.3;", "ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;")
        .replace(/ssl_ciphers [^;]+;/, "ssl_ciphers DEFAULT:@SECLEVEL=0;")
        .replace(/add_header Strict-Transport-Security [^;]+;/, "")
        .replace(/limit_req zone=wagate_ip [^;]+;/g, "")
        .replace(/(location = \/metrics \{\s*)return 404 [^;]+;/, "$1proxy_pass http://wagate_gateway;")
        .replace(/return 301 https:[^;]+;/, "proxy_pass http://wagate_gateway;"),
    false,
  );
  const mint = async (scopes: Array<"messages:read" | "admin">) =>
    (
      await mintToken({
        secret: API_SECRET,
        sub: "smoke-test",
        scopes,
        issuer: "wagate",
        audience: "wagate",
        ttlSeconds: 600,
      })
    ).token;
  tokenFile = join(dir, "token");
  await writeFile(tokenFile, `${await mint(["messages:read"])}\n`, { mode: 0o600 });
  readOnlyAdminTokenFile = join(dir, "admin-token");
  await writeFile(readOnlyAdminTokenFile, await mint(["admin"]), { mode: 0o600 });
});

afterAll(async () => {
  await stopAll(processes);
  await rm(dir, { recursive: true, force: true });
});

describe("smoke against the edge as rendered for the VM", () => {
  it("accepts a token without messages:read as authenticated (403, not 401), and skips the check without one", async () => {
    const admin = await runScript(
      "smoke.ts",
      [...smokeArgs(good), "--token-file", "-", "--skip", "rate-limit"],
      {
        stdin: (await import("node:fs")).readFileSync(readOnlyAdminTokenFile, "utf8"),
      },
    );
    expect(lines(admin.stdout).get("token-accepted")).toBe("PASS");
    expect(admin.stdout).toMatch(/token-accepted\s+authenticated \(403/);
    const none = await runScript("smoke.ts", [...smokeArgs(good), "--skip", "rate-limit"], {
      env: { ...process.env, WAGATE_TOKEN: "" },
    });
    expect(lines(none.stdout).get("token-accepted")).toBe("SKIP");
    expect(none.code).toBe(0);
  });

  it("fails the token check for a token signed with another secret", async () => {
    const other = await mintToken({
      secret: randomBytes(32).toString("hex"),
      sub: "x",
      scopes: ["messages:read"],
      issuer: "wagate",
      audience: "wagate",
      ttlSeconds: 600,
    });
    const result = await runScript("smoke.ts", [...smokeArgs(good), "--skip", "rate-limit"], {
      env: { ...process.env, WAGATE_TOKEN: other.token },
    });
    expect(lines(result.stdout).get("token-accepted")).toBe("FAIL");
    expect(result.stdout).toMatch(/token-accepted\s+answered 401, expected 404: the token was refused/);
    expect(result.code).toBe(1);
  });

  it("fails every HTTPS check when the certificate is not trusted (no --ca)", async () => {
    const args = smokeArgs(good).slice(0, 5);
    const result = await runScript("smoke.ts", [...args, "--skip", "rate-limit"]);
    const checks = lines(result.stdout);
    expect(checks.get("certificate")).toBe("FAIL");
    expect(checks.get("health")).toBe("FAIL");
    expect(checks.get("tls1.0-refused")).toBe("PASS");
    expect(result.code).toBe(1);
  });

  // The full run comes after the others: its rate-limit burst leaves this client's bucket empty for a moment.
  it("passes every check, one line each, exit 0", async () => {
    const result = await runScript("smoke.ts", [...smokeArgs(good), "--token-file", tokenFile]);
    expect(result.stderr).toBe("");
    const checks = lines(result.stdout);
    expect(Object.fromEntries(checks)).toEqual({
      "tls1.2-accepted": "PASS",
      "tls1.3-accepted": "PASS",
      certificate: "PASS",
      "tls1.0-refused": "PASS",
      "tls1.1-refused": "PASS",
      "http-redirects": "PASS",
      health: "PASS",
      headers: "PASS",
      "internal-routes-refused": "PASS",
      "unauthenticated-refused": "PASS",
      "forged-token-refused": "PASS",
      "token-accepted": "PASS",
      "waf-blocks-sqli": "PASS",
      "rate-limit": "PASS",
    });
    expect(result.stdout).toMatch(/: 14 passed, 0 failed, 0 skipped\n$/);
    expect(result.code).toBe(0);
    // The token is never echoed.
    expect(result.stdout).not.toContain((await import("node:fs")).readFileSync(tokenFile, "utf8").trim());
  });

  it("left the edge's own JSON log in a shape suspicious-ips reads: the WAF probe and the 429s are counted", async () => {
    const result = await runScript("suspicious-ips.ts", [join(good.logDir, ACCESS_LOG_FILE), "--json"]);
    expect(result.code).toBe(0);
    const out = JSON.parse(result.stdout) as {
      malformed: number;
      ips: Array<{ ip: string; waf: number; status429: number; status403: number; requests: number }>;
    };
    expect(out.malformed).toBe(0);
    expect(out.ips).toHaveLength(1);
    const client = out.ips[0];
    expect(client?.ip).toBe("127.0.0.1");
    // One anonymous SQL injection probe per smoke run that did not skip it (four runs above), and one more with
    // the token in the three runs whose token the edge accepted.
    expect(client?.waf).toBe(4 + 3);
    expect(client?.status403).toBe(4 + 3 + 1);
    expect(client?.status429).toBeGreaterThanOrEqual(1);
    expect(client?.status429).toBeLessThanOrEqual(10);
  });
});

describe("smoke against a weakened edge", () => {
  it("fails exactly the checks whose protection was removed", async () => {
    const result = await runScript("smoke.ts", [
      ...smokeArgs(weak),
      "--burst-max",
      "80",
      "--token-file",
      tokenFile,
    ]);
    const checks = lines(result.stdout);
    expect(Object.fromEntries([...checks].filter(([, s]) => s === "FAIL"))).toEqual({
      "tls1.0-refused": "FAIL",
      "tls1.1-refused": "FAIL",
      "http-redirects": "FAIL",
      headers: "FAIL",
      "internal-routes-refused": "FAIL",
      "waf-blocks-sqli": "FAIL",
      "rate-limit": "FAIL",
    });
    expect(result.stdout).toMatch(/tls1\.0-refused\s+the server accepted TLSv1\n/);
    expect(result.stdout).toMatch(/headers\s+Strict-Transport-Security max-age 0/);
    expect(result.stdout).toMatch(/rate-limit\s+no 429 within 80 requests/);
    expect(result.stdout).toMatch(/: 7 passed, 7 failed, 0 skipped\n$/);
    expect(result.code).toBe(1);
  });
});

describe("smoke usage", () => {
  it("has --help and refuses bad usage in one line with exit 2", async () => {
    const help = await runScript("smoke.ts", ["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: npm run smoke/);
    for (const args of [
      ["--bogus"],
      [],
      ["http://gateway.test"],
      ["https://gateway.test", "--skip", "nothing"],
      ["https://gateway.test", "--resolve", "other.test:443:127.0.0.1"],
      ["https://gateway.test", "--burst-max", "0"],
    ]) {
      const bad = await runScript("smoke.ts", args);
      expect(bad.code, args.join(" ")).toBe(2);
      expect(bad.stderr.trim().split("\n"), args.join(" ")).toHaveLength(1);
    }
  });
});
