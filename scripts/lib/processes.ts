import { type ChildProcess, type SpawnOptions, spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import { connect, createServer } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";

// Starting and stopping the real binaries (nginx, pebble, certbot, fail2ban, the gateway) for the local stack,
// the integration tests and the benchmarks. Every process is stopped by its pid, also when a test fails.

export interface Started {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  readonly exited: Promise<number | string>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. Safe to call twice. */
  stop(graceMs?: number): Promise<void>;
}

export interface StartOptions extends SpawnOptions {
  /** Append the process's stdout and stderr to this file (otherwise they are discarded). */
  logFile?: string;
}

export function startProcess(
  name: string,
  command: string,
  args: string[],
  options: StartOptions = {},
): Started {
  const { logFile, ...spawnOptions } = options;
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], ...spawnOptions });
  if (child.pid === undefined) throw new Error(`${name}: could not start ${command}`);
  if (logFile) {
    const log = createWriteStream(logFile, { flags: "a" });
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
  } else {
    child.stdout?.resume();
    child.stderr?.resume();
  }
  const exited = new Promise<number | string>((resolve) =>
    child.once("exit", (code, signal) => resolve(code ?? signal ?? "unknown")),
  );
  const pid = child.pid;
  let stopping: Promise<void> | undefined;
  const stop = (graceMs = 5_000): Promise<void> => {
    stopping ??= (async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timedOut = await Promise.race([exited.then(() => false), sleep(graceMs).then(() => true)]);
      if (timedOut) {
        child.kill("SIGKILL");
        await exited;
      }
    })();
    return stopping;
  };
  return { name, pid, child, exited, stop };
}

/** Stops every process in reverse start order; errors of one never keep the others running. */
export async function stopAll(processes: readonly Started[]): Promise<void> {
  for (const p of [...processes].reverse()) await p.stop().catch(() => undefined);
}

/** A TCP port that was free on `host` a moment ago. */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, host, () => {
      const address = server.address();
      server.close(() =>
        typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port")),
      );
    });
  });
}

/** Waits until something accepts TCP connections on host:port, or throws after `timeoutMs`. */
export async function waitForPort(port: number, host = "127.0.0.1", timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect({ port, host });
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** Throws, naming the Debian package, when a binary the caller needs is not installed. */
export async function requireBinary(binary: string, debianPackage: string): Promise<void> {
  const { access, constants } = await import("node:fs/promises");
  const dirs = (process.env.PATH ?? "").split(":").concat(["/usr/sbin", "/sbin", "/usr/bin"]);
  for (const dir of dirs) {
    try {
      await access(`${dir}/${binary}`, constants.X_OK);
      return;
    } catch {}
  }
  throw new Error(`${binary} is not installed: apt-get install ${debianPackage}`);
}
