import { execFile } from "node:child_process";
import { access, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  freePort,
  requireBinary,
  type Started,
  startProcess,
  waitForPort,
} from "../../scripts/lib/processes.js";
import { layoutDirectories, localLayout } from "../render/layout.js";
import { renderModsecurity } from "../render/modsecurity.js";
import { wafSchema } from "../render/settings.js";
import { type EchoUpstream, startEchoUpstream } from "./fixtures/upstream.js";

// OWASP CRS's own regression tests (the families that apply to a JSON API) against the rules the edge renders:
// whatever was trimmed or excluded for speed or false positives must keep Debian's as-shipped count, 648 of 656
// at paranoia level 1 (the 8 others are malformed requests nginx itself answers before ModSecurity sees them).
// The test data lives beside the repository (../shared), never in it.

const run = promisify(execFile);
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const testsDir = resolve(repoRoot, "../shared/crs-regression-3.3.4/tests");
const tool = resolve(repoRoot, "../shared/tools/crs-regression.mjs");
const BASELINE = 648;

describe("OWASP CRS 3.3.4 regression suite against the rendered rules", () => {
  let dir: string;
  let upstream: EchoUpstream;
  let nginx: Started | undefined;
  let port: number;
  let errorLog: string;

  beforeAll(async () => {
    await access(testsDir).catch(() => {
      throw new Error(
        `${testsDir} is missing: the CRS regression data must sit beside the repository in ../shared/crs-regression-3.3.4`,
      );
    });
    await access(tool).catch(() => {
      throw new Error(
        `${tool} is missing: the CRS regression runner must sit beside the repository in ../shared/tools`,
      );
    });
    await requireBinary("nginx", "nginx");
    dir = await mkdtemp(join(tmpdir(), "wagate-crs-"));
    upstream = await startEchoUpstream();
    port = await freePort();
    const layout = localLayout(dir, { http: port, https: await freePort(), upstream: upstream.port });
    const { files, rulesFile } = renderModsecurity(wafSchema.parse({}), layout);
    for (const d of layoutDirectories(layout)) await mkdir(d, { recursive: true });
    for (const [name, text] of Object.entries(files)) await writeFile(join(layout.confDir, name), text);
    errorLog = join(layout.logDir, "error.log");
    // The runner's contract: plain HTTP, error_log at info (ModSecurity logs each matched rule there), the rules
    // file under test, an upstream that answers 200.
    const conf = `load_module ${layout.modulesDir}/ngx_http_modsecurity_module.so;
worker_processes 1;
pid ${layout.pidFile};
error_log ${errorLog} info;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path ${layout.tempDir}/body;
    proxy_temp_path ${layout.tempDir}/proxy;
    fastcgi_temp_path ${layout.tempDir}/fastcgi;
    uwsgi_temp_path ${layout.tempDir}/uwsgi;
    scgi_temp_path ${layout.tempDir}/scgi;
    modsecurity on;
    modsecurity_rules_file ${rulesFile};
    server {
        listen 127.0.0.1:${port};
        location / { proxy_pass http://127.0.0.1:${upstream.port}; }
    }
}
`;
    await writeFile(join(layout.confDir, "nginx.conf"), conf);
    nginx = startProcess("nginx", "nginx", [
      "-p",
      dir,
      "-c",
      join(layout.confDir, "nginx.conf"),
      "-e",
      errorLog,
      "-g",
      "daemon off;",
    ]);
    await waitForPort(port);
  });

  afterAll(async () => {
    await nginx?.stop();
    await upstream?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it(`keeps at least ${BASELINE} of 656 expectations at paranoia level 1`, { timeout: 180_000 }, async () => {
    const result = await run(process.execPath, [tool], {
      env: {
        ...process.env,
        TESTS: testsDir,
        TARGET: `127.0.0.1:${port}`,
        ERRLOG: errorLog,
        MAX_PL: "1",
        REQUIRE_FROM: join(repoRoot, "package.json"),
      },
      maxBuffer: 1 << 24,
    }).catch((error: { stdout?: string; stderr?: string }) => ({
      stdout: error.stdout ?? "",
      stderr: error.stderr ?? "",
    }));
    const summary = result.stdout.match(/crs regression .*: (\d+)\/(\d+) pass/);
    if (!summary)
      throw new Error(`the CRS regression runner printed no summary:\n${result.stdout}\n${result.stderr}`);
    const [pass, total] = [Number(summary[1]), Number(summary[2])];
    console.log(result.stdout.trim());
    expect(total).toBe(656);
    expect(pass).toBeGreaterThanOrEqual(BASELINE);
  });
});
