import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { startFakeGraph } from "../gateway/test/support/fake-graph.js";
import { buildGateway, imageNodeOptions, memoryOf, startCompiledGateway } from "./lib/compiled-gateway.js";

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
  buildGateway();
  const nodeOptions = imageNodeOptions();
  const gateway = await startCompiledGateway({
    graph: { baseUrl: fake.baseUrl, accessToken: ACCESS_TOKEN },
    dir,
    nodeOptions,
  }).catch(async (error: unknown) => {
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
    throw error;
  });
  const pid = gateway.process.pid;
  try {
    const token = await gateway.token(["messages:send"]);
    // Warm-up: the JIT, the connection to the fake, the database's pages.
    const warm = await upload(gateway.port, token, video(1024 * 1024));
    if (warm.status !== 201) throw new Error(`warm-up upload answered ${warm.status}: ${warm.text}`);
    await sleep(500);
    process.stdout.write(
      `${uploads} uploads of a ${SIZE / 1024 / 1024} MB video/mp4 to POST /v1/media (NODE_OPTIONS="${nodeOptions}"), RSS sampled every 5 ms from /proc/${pid}/status\n`,
    );
    const growths: number[] = [];
    const hwmBefore = memoryOf(pid).hwmKb;
    for (let i = 0; i < uploads; i++) {
      const body = video(SIZE);
      const before = memoryOf(pid);
      let peakKb = before.rssKb;
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          peakKb = Math.max(peakKb, memoryOf(pid).rssKb);
          await sleep(5);
        }
      })();
      const started = performance.now();
      const answer = await upload(gateway.port, token, body);
      const seconds = (performance.now() - started) / 1000;
      sampling = false;
      await sampler;
      const after = memoryOf(pid);
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
    const hwmGrowth = (memoryOf(pid).hwmKb - hwmBefore) / 1024;
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
