import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { mintToken } from "../gateway/src/auth/index.js";
import { startFakeGraph } from "../gateway/test/support/fake-graph.js";
import { freePort, startProcess, waitForPort } from "./lib/processes.js";

// npm run bench:media — what a 16 MB upload costs the gateway's memory. Starts the gateway as production runs it
// (compiled with `npm run build -w gateway`, done first; the image's NODE_OPTIONS; cloud transport against the fake
// Graph API in this process) and sends BENCH_UPLOADS (default 3) uploads of a 16 MB video (the cap of its kind) to
// POST /v1/media, one after the other, each written in 64 KiB chunks with backpressure. The gateway's RSS is read
// from /proc/<pid>/status every 5 ms during each upload; printed: RSS before, the peak sampled during, the growth,
// and VmHWM (the kernel's own peak) before and after. Target: growth under 32 MB (the body is streamed to Meta,
// never held whole).

const uploads = Number(process.env.BENCH_UPLOADS ?? 3);
const SIZE = 16 * 1024 * 1024;
const ACCESS_TOKEN = "bench-media-token";
const API_SECRET = randomBytes(32).toString("hex");
const REPO_ROOT = join(import.meta.dirname, "..");

function memoryOf(pid: number): { rssKb: number; hwmKb: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? 0);
  return { rssKb: field("VmRSS"), hwmKb: field("VmHWM") };
}

/** The NODE_OPTIONS the image sets (gateway/Dockerfile): what production runs the gateway with. */
function imageNodeOptions(): string {
  const dockerfile = readFileSync(join(REPO_ROOT, "gateway/Dockerfile"), "utf8");
  const found = [...dockerfile.matchAll(/^\s*(?:ENV\s+)?NODE_OPTIONS="([^"]*)"/gm)].map((m) => m[1] ?? "");
  if (found.length !== 1)
    throw new Error(`gateway/Dockerfile: expected one NODE_OPTIONS, found ${found.length}`);
  return found[0] as string;
}

function video(size: number): Buffer {
  const ftyp = Buffer.alloc(24);
  ftyp.writeUInt32BE(24, 0);
  ftyp.write("ftypisom", 4, "latin1");
  ftyp.write("isomiso2", 16, "latin1");
  return Buffer.concat([ftyp, randomBytes(size - ftyp.length)]);
}

function upload(port: number, token: string, body: Buffer): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: "127.0.0.1",
      port,
      method: "POST",
      path: "/v1/media",
      headers: {
        authorization: `Bearer ${token}`,
        "content-type": "video/mp4",
        "content-length": body.length,
      },
    });
    req.on("error", reject);
    req.on("response", (res) => {
      let text = "";
      res.on("data", (c: Buffer) => {
        text += c.toString();
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
    });
    let at = 0;
    const write = () => {
      while (at < body.length) {
        const chunk = body.subarray(at, at + 64 * 1024);
        at += chunk.length;
        if (!req.write(chunk)) {
          req.once("drain", write);
          return;
        }
      }
      req.end();
    };
    write();
  });
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), "wagate-bench-media-"));
  const fake = await startFakeGraph({ accessToken: ACCESS_TOKEN });
  const port = await freePort();
  process.stdout.write("building the gateway (npm run build -w gateway) ...\n");
  execFileSync("npm", ["run", "-s", "build", "-w", "gateway"], { cwd: REPO_ROOT, stdio: "inherit" });
  const nodeOptions = imageNodeOptions();
  const gateway = startProcess("gateway", process.execPath, ["gateway/dist/main.js"], {
    cwd: REPO_ROOT,
    logFile: join(dir, "gateway.log"),
    env: {
      PATH: process.env.PATH ?? "",
      API_SECRET,
      HOST: "127.0.0.1",
      PORT: String(port),
      DATABASE_PATH: join(dir, "bench.db"),
      WHATSAPP_TRANSPORT: "cloud",
      GRAPH_API_BASE_URL: fake.baseUrl,
      WHATSAPP_ACCESS_TOKEN: ACCESS_TOKEN,
      WHATSAPP_PHONE_NUMBER_ID: "106540352242922",
      LOG_LEVEL: "warn",
      NODE_OPTIONS: nodeOptions,
    },
  });
  try {
    await waitForPort(port, "127.0.0.1", 30_000);
    const { token } = await mintToken({
      secret: API_SECRET,
      sub: "bench",
      scopes: ["messages:send"],
      ttlSeconds: 3600,
      issuer: "wagate",
      audience: "wagate",
    });
    // Warm-up: the JIT, the connection to the fake, the database's pages.
    const warm = await upload(port, token, video(1024 * 1024));
    if (warm.status !== 201) throw new Error(`warm-up upload answered ${warm.status}: ${warm.text}`);
    await sleep(500);
    process.stdout.write(
      `${uploads} uploads of a ${SIZE / 1024 / 1024} MB video/mp4 to POST /v1/media (NODE_OPTIONS="${nodeOptions}"), RSS sampled every 5 ms from /proc/${gateway.pid}/status\n`,
    );
    const growths: number[] = [];
    const hwmBefore = memoryOf(gateway.pid).hwmKb;
    for (let i = 0; i < uploads; i++) {
      const body = video(SIZE);
      const before = memoryOf(gateway.pid);
      let peakKb = before.rssKb;
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          peakKb = Math.max(peakKb, memoryOf(gateway.pid).rssKb);
          await sleep(5);
        }
      })();
      const started = performance.now();
      const answer = await upload(port, token, body);
      const seconds = (performance.now() - started) / 1000;
      sampling = false;
      await sampler;
      const after = memoryOf(gateway.pid);
      if (answer.status !== 201) throw new Error(`upload answered ${answer.status}: ${answer.text}`);
      const received = fake.media.uploads.at(-1);
      if (received?.fileBytes !== SIZE || !received.complete)
        throw new Error("the fake did not receive the whole file");
      const growthMb = (peakKb - before.rssKb) / 1024;
      growths.push(growthMb);
      process.stdout.write(
        `upload ${i + 1}: ${seconds.toFixed(2)} s; RSS before ${(before.rssKb / 1024).toFixed(1)} MB, peak during ${(peakKb / 1024).toFixed(1)} MB, growth ${growthMb.toFixed(1)} MB; VmHWM ${(before.hwmKb / 1024).toFixed(1)} → ${(after.hwmKb / 1024).toFixed(1)} MB\n`,
      );
    }
    const worst = Math.max(...growths);
    // A gateway that buffered each body would also keep a larger heap afterwards: VmHWM over all the uploads.
    const hwmGrowth = (memoryOf(gateway.pid).hwmKb - hwmBefore) / 1024;
    process.stdout.write(
      `VmHWM growth over all ${uploads} uploads: ${hwmGrowth.toFixed(1)} MB\n` +
        `RSS growth during a 16 MB upload: max ${worst.toFixed(1)} MB (target < 32 MB): ${worst < 32 ? "met" : "NOT met"}\n`,
    );
  } finally {
    await gateway.stop();
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
