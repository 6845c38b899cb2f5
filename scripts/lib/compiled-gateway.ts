import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { mintToken, type Scope } from "../../gateway/src/auth/index.js";
import { freePort, type Started, startProcess, waitForPort } from "./processes.js";

// The benchmarks' gateway: compiled (`npm run build -w gateway`), started as production starts it (the image's
// NODE_OPTIONS, read from gateway/Dockerfile) with the cloud transport against a fake Graph API, on a free loopback
// port, with its own database in the caller's directory and a fresh API secret that never leaves this process.

const REPO_ROOT = join(import.meta.dirname, "../..");

/** `npm run build -w gateway`: what the compiled gateway runs. */
export function buildGateway(): void {
  process.stdout.write("building the gateway (npm run build -w gateway) ...\n");
  execFileSync("npm", ["run", "-s", "build", "-w", "gateway"], { cwd: REPO_ROOT, stdio: "inherit" });
}

/** The NODE_OPTIONS the image sets (gateway/Dockerfile, runtime stage): what production runs the gateway with. */
export function imageNodeOptions(
  dockerfile = readFileSync(join(REPO_ROOT, "gateway/Dockerfile"), "utf8"),
): string {
  const found = [...dockerfile.matchAll(/^\s*(?:ENV\s+)?NODE_OPTIONS="([^"]*)"/gm)].map((m) => m[1] ?? "");
  if (found.length !== 1)
    throw new Error(`gateway/Dockerfile: expected one NODE_OPTIONS="..." setting, found ${found.length}`);
  return found[0] as string;
}

/** RSS and its high-water mark (VmHWM) of a process, in kB, from /proc/<pid>/status. */
export function memoryOf(pid: number): { rssKb: number; hwmKb: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? 0);
  return { rssKb: field("VmRSS"), hwmKb: field("VmHWM") };
}

export interface CompiledGatewayOptions {
  /** The fake Graph API the cloud transport sends to, and the access token it expects. */
  graph: { baseUrl: string; accessToken: string };
  /** Holds the database and the gateway's log (gateway.log). */
  dir: string;
  /** Default: the image's NODE_OPTIONS. */
  nodeOptions?: string;
  /** Default: gateway/dist/main.js; a launcher file for a bench that starts the gateway its own way. */
  entry?: string;
  /** More settings (environment variable names, as the gateway reads them). */
  env?: Record<string, string>;
}

export interface CompiledGateway {
  port: number;
  process: Started;
  /** A bearer token of this gateway's secret with these scopes, valid for an hour. */
  token(scopes: Scope[]): Promise<string>;
  stop(): Promise<void>;
}

export async function startCompiledGateway(options: CompiledGatewayOptions): Promise<CompiledGateway> {
  const apiSecret = randomBytes(32).toString("hex");
  const port = await freePort();
  const started = startProcess("gateway", process.execPath, [options.entry ?? "gateway/dist/main.js"], {
    cwd: REPO_ROOT,
    logFile: join(options.dir, "gateway.log"),
    env: {
      PATH: process.env.PATH ?? "",
      API_SECRET: apiSecret,
      HOST: "127.0.0.1",
      PORT: String(port),
      DATABASE_PATH: join(options.dir, "bench.db"),
      WHATSAPP_TRANSPORT: "cloud",
      GRAPH_API_BASE_URL: options.graph.baseUrl,
      WHATSAPP_ACCESS_TOKEN: options.graph.accessToken,
      WHATSAPP_PHONE_NUMBER_ID: "106540352242922",
      // Per-message info lines would measure the logger; warnings and errors still show.
      LOG_LEVEL: "warn",
      NODE_OPTIONS: options.nodeOptions ?? imageNodeOptions(),
      ...options.env,
    },
  });
  try {
    await waitForPort(port, "127.0.0.1", 30_000);
  } catch (error) {
    await started.stop();
    throw error;
  }
  return {
    port,
    process: started,
    token: async (scopes) =>
      (
        await mintToken({
          secret: apiSecret,
          sub: "bench",
          scopes,
          ttlSeconds: 3600,
          issuer: "wagate",
          audience: "wagate",
        })
      ).token,
    stop: () => started.stop(),
  };
}
