import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ADMIN_CLI_PATH, renderAdminCli } from "../render/admin-cli.js";
import { GATEWAY_ENV_FILE, renderHostBundle } from "../render/bundle.js";
import { LOCAL_GATEWAY_IMAGE } from "../render/systemd.js";

// /usr/local/sbin/wagate, the VM's `sudo wagate <command>`: shellcheck clean, shipped by the bundle and installed
// by the gateway step, and run here with a recording podman, systemctl and journalctl in place of the real ones:
// while the gateway runs, the command goes into its container with `podman exec`; while it is stopped, into a
// one-off container of the same image with the same env file, user, volume and read-only root; `backup` runs
// the backup unit on the host.

const dir = mkdtempSync(join(tmpdir(), "wagate-admin-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const PINNED = `registry.example.com/wagate/gateway@sha256:${"ab".repeat(32)}`;

/** Fake podman/systemctl/journalctl: each appends its argv (one line, NUL-free) to calls.log. */
function fakeTools(running: boolean, backupFails = false): { bin: string; calls: string } {
  const bin = mkdtempSync(join(dir, "bin-"));
  const calls = join(bin, "calls.log");
  const tool = (name: string, body: string) => {
    const path = join(bin, name);
    writeFileSync(path, `#!/bin/bash\nprintf '%s\\n' "${name} $*" >>${calls}\n${body}\n`);
    chmodSync(path, 0o755);
  };
  tool(
    "podman",
    `if [[ "$*" == *"container inspect"* ]]; then ${running ? "echo true" : "exit 125"}; fi; exit 0`,
  );
  tool("systemctl", backupFails ? "exit 1" : "exit 0");
  tool("journalctl", "echo 'backup written: /var/backups/wagate/wagate-x.db.gz'");
  return { bin, calls };
}

function runCli(script: string, args: string[], tools: { bin: string; calls: string }) {
  const path = join(tools.bin, "wagate");
  writeFileSync(path, script.replaceAll("/usr/bin/podman", join(tools.bin, "podman")));
  chmodSync(path, 0o755);
  const result = spawnSync("bash", [path, ...args], {
    env: { PATH: `${tools.bin}:${process.env.PATH ?? ""}` },
    encoding: "utf8",
  });
  let calls: string[] = [];
  try {
    calls = readFileSync(tools.calls, "utf8").trim().split("\n");
  } catch {}
  return { ...result, calls };
}

describe("the VM's wagate command", () => {
  const script = renderAdminCli({ image: PINNED, envFile: GATEWAY_ENV_FILE });

  it("is shellcheck clean", () => {
    const file = join(dir, "wagate");
    writeFileSync(file, script);
    const check = spawnSync("shellcheck", ["--severity=style", file], { encoding: "utf8" });
    if (check.error) throw new Error("shellcheck is missing: apt-get install shellcheck");
    expect(check.stdout).toBe("");
    expect(check.status).toBe(0);
  });

  it("is in the bundle and installed by the gateway step, which re-runs when it changes", () => {
    const bundle = renderHostBundle({
      stack: "prod",
      domain: "api.example.com",
      acmeEmail: "ops@example.com",
      acmeServer: "production",
      rateLimit: {} as never,
      waf: {} as never,
      backupBucket: "b-bucket",
      awsRegion: "us-east-2",
      gatewayImage: PINNED,
    });
    expect(bundle.files["admin/wagate"]).toBe(script);
    expect(bundle.steps.find((s) => s.name === "gateway")?.uses).toContain("admin/wagate");
    expect(bundle.files["vars.sh"]).toContain(`ADMIN_CLI='${ADMIN_CLI_PATH}'`);
    expect(bundle.files["provision.sh"]).toContain('put "$BUNDLE_DIR/admin/wagate" "$ADMIN_CLI" 0755');
  });

  it("runs the command in the running gateway's container, arguments untouched", () => {
    const tools = fakeTools(true);
    const run = runCli(script, ["token", "--sub", "my backend", "--scope", "messages:send otp"], tools);
    expect(run.stderr).toBe("");
    expect(run.status).toBe(0);
    expect(run.calls.at(-1)).toBe(
      "podman exec --interactive wagate-gateway wagate token --sub my backend --scope messages:send otp",
    );
  });

  it("link runs in the running gateway's container (it asks that gateway) and is refused while it is stopped", () => {
    const running = runCli(script, ["link", "sales", "--code", "+14155550123"], fakeTools(true));
    expect(running.status).toBe(0);
    expect(running.calls.at(-1)).toBe(
      "podman exec --interactive wagate-gateway wagate link sales --code +14155550123",
    );
    const stopped = runCli(script, ["link", "sales"], fakeTools(false));
    expect(stopped.status).toBe(1);
    expect(stopped.stderr).toContain("wagate link: the gateway is not running");
    expect(stopped.calls.filter((c) => c.startsWith("podman run"))).toEqual([]);
  });

  it("runs a one-off container with the gateway's env file, user, volume and read-only root when it is stopped", () => {
    const tools = fakeTools(false);
    const run = runCli(script, ["revoke", "abc", "--offline"], tools);
    expect(run.status).toBe(0);
    expect(run.stderr).toContain("the gateway is not running");
    const call = run.calls.at(-1) ?? "";
    expect(call).toMatch(/^podman run --rm --interactive /);
    for (const flag of [
      `--env-file=${GATEWAY_ENV_FILE}`,
      "--user=10001:10001",
      "--read-only",
      "--cap-drop=all",
      "--security-opt=no-new-privileges",
      "--network=none",
      "--volume=/var/lib/wagate:/data:rw",
      "--env=DATABASE_PATH=/data/wagate.db",
      "--pull=missing",
      "--entrypoint=wagate",
    ])
      expect(call.split(" ")).toContain(flag);
    expect(call.endsWith(`${PINNED} revoke abc --offline`)).toBe(true);
    // A host-built image is never looked up in a registry.
    const local = runCli(
      renderAdminCli({ image: LOCAL_GATEWAY_IMAGE, envFile: GATEWAY_ENV_FILE }),
      ["status"],
      fakeTools(false),
    );
    expect(local.calls.at(-1)?.split(" ")).toContain("--pull=never");
  });

  it("passes the host's podman flags (a test box's) to every podman call", () => {
    const boxed = renderAdminCli({
      image: PINNED,
      envFile: GATEWAY_ENV_FILE,
      podman: {
        globalArgs: ["--runtime", "crun"],
        cgroups: "disabled",
        extraRunArgs: ["--ulimit=nofile=1024:1024"],
      },
    });
    const run = runCli(boxed, ["status"], fakeTools(false));
    expect(run.calls.every((c) => c.startsWith("podman --runtime crun "))).toBe(true);
    expect(run.calls.at(-1)?.split(" ")).toEqual(
      expect.arrayContaining(["--cgroups=disabled", "--ulimit=nofile=1024:1024"]),
    );
  });

  it("backup runs the backup unit on the host and shows what it wrote; a failed backup exits 1", () => {
    const ok = runCli(script, ["backup"], fakeTools(true));
    expect(ok.status).toBe(0);
    expect(ok.calls[0]).toBe("systemctl start wagate-backup.service");
    expect(ok.stdout).toContain("backup written:");
    expect(ok.calls.some((c) => c.startsWith("podman"))).toBe(false);
    const failed = runCli(script, ["backup"], fakeTools(true, true));
    expect(failed.status).toBe(1);
    expect(runCli(script, ["backup", "/tmp/x"], fakeTools(true)).status).toBe(2);
  });

  it("logs reads the gateway's journal with the options given", () => {
    const run = runCli(script, ["logs", "-n", "50", "--since", "1 hour ago"], fakeTools(true));
    expect(run.calls).toEqual(["journalctl -u wagate-gateway.service -n 50 --since 1 hour ago"]);
  });

  it("refuses to run without root", () => {
    const tools = fakeTools(true);
    const path = join(tools.bin, "wagate");
    writeFileSync(path, script);
    chmodSync(path, 0o755);
    chmodSync(tools.bin, 0o755);
    chmodSync(dir, 0o755);
    const run = spawnSync(
      "setpriv",
      ["--reuid=65534", "--regid=65534", "--clear-groups", "bash", path, "status"],
      {
        encoding: "utf8",
      },
    );
    expect(run.stderr).toBe("wagate: run it as root: sudo wagate <command>\n");
    expect(run.status).toBe(1);
  });
});
