import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { executeActions, HOST_KEY_REFUSED, pinHostKey } from "../../scripts/lib/box/executor.js";
import { run } from "../../scripts/lib/box/run.js";
import {
  freePort,
  requireBinary,
  type Started,
  startProcess,
  waitForPort,
} from "../../scripts/lib/processes.js";
import type { RemoteAction } from "../plan/provision.js";

// The box executor pins the host key the way Pulumi's `connection.hostKey` does, checked against a real OpenSSH
// server on loopback: with the host's own key every kind of action runs; with another key no command runs and no
// file is written — even though the caller's ssh options accept any key and a verified connection to the same
// host is already open for multiplexing. The same executor without a pin does reach the host, so the refusals
// are the pin's doing. (The box itself runs this too, as its "wrong-host-key-refused" check.)

const SSHD = "/usr/sbin/sshd";

let dir: string;
let sshd: Started;
let port: number;
let rightKey: string;
let wrongKey: string;
let sshArgs: string[];

const keygen = async (file: string) => {
  await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", file]);
  return (await readFile(`${file}.pub`, "utf8")).split(" ").slice(0, 2).join(" ");
};
const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );
const actionsWriting = (marker: string): RemoteAction[] => [
  {
    kind: "run",
    id: "ready",
    command: `touch ${marker}.ready`,
    after: [],
    triggers: [],
    waitForHost: true,
  },
  { kind: "copy", id: "file-x", remotePath: `${marker}.copy`, content: "copied\n", after: [], triggers: [] },
  { kind: "run", id: "step", command: `touch ${marker}.step`, after: [], triggers: [] },
];
const secrets = { gatewayEnv: "", edgeIdentityKey: "" };

beforeAll(async () => {
  await requireBinary("sshd", "openssh-server");
  await requireBinary("ssh", "openssh-client");
  dir = await mkdtemp(join(tmpdir(), "wagate-host-key-"));
  // sshd run as root insists on its privilege separation directory (Debian's service makes it at start).
  if (process.getuid?.() === 0) await mkdir("/run/sshd", { recursive: true, mode: 0o755 });
  rightKey = await keygen(join(dir, "host_ed25519"));
  wrongKey = await keygen(join(dir, "other_host_ed25519"));
  const clientKey = join(dir, "id_ed25519");
  await keygen(clientKey);
  await writeFile(join(dir, "authorized_keys"), await readFile(`${clientKey}.pub`));
  port = await freePort();
  const user = userInfo().username;
  await writeFile(
    join(dir, "sshd_config"),
    [
      `ListenAddress 127.0.0.1:${port}`,
      `HostKey ${join(dir, "host_ed25519")}`,
      `AuthorizedKeysFile ${join(dir, "authorized_keys")}`,
      "PidFile none",
      "StrictModes no",
      "UsePAM no",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "PermitRootLogin prohibit-password",
      `AllowUsers ${user}`,
      "",
    ].join("\n"),
  );
  sshd = startProcess(SSHD, SSHD, ["-D", "-e", "-f", join(dir, "sshd_config")], {
    logFile: join(dir, "sshd.log"),
  });
  await waitForPort(port);
  // What a careless caller might pass: any key accepted, and a shared connection to multiplex on.
  sshArgs = [
    "-i",
    clientKey,
    "-p",
    String(port),
    "-o",
    "BatchMode=yes",
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "LogLevel=ERROR",
    "-o",
    "ControlMaster=auto",
    "-o",
    `ControlPath=${join(dir, "control")}`,
    "-o",
    "ControlPersist=60",
    `${user}@127.0.0.1`,
  ];
});

afterAll(async () => {
  if (sshArgs)
    await run("ssh", [...sshArgs.slice(0, -1), "-O", "exit", sshArgs.at(-1) ?? ""], { check: false });
  await sshd?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("box executor host key pinning", () => {
  it("runs every kind of action when the host shows the pinned key, over one connection", {
    timeout: 30_000,
  }, async () => {
    const marker = join(dir, "pinned-right");
    const logins = async () =>
      ((await readFile(join(dir, "sshd.log"), "utf8")).match(/Accepted publickey/g) ?? []).length;
    const before = await logins();
    const result = await executeActions(actionsWriting(marker), { sshArgs, secrets, hostKey: rightKey });
    expect(result.outcomes.map((o) => o.ran)).toEqual([true, true, true]);
    // Three sessions, one login: the pinned run's own shared connection, closed when the run ends.
    expect((await logins()) - before).toBe(1);
    expect(await exists(`${marker}.ready`)).toBe(true);
    expect(await readFile(`${marker}.copy`, "utf8")).toBe("copied\n");
    expect(await exists(`${marker}.step`)).toBe(true);
  });

  it("refuses a host that shows another key: no command runs, no file is written", {
    timeout: 30_000,
  }, async () => {
    // A verified-by-nobody master connection is open: the pinned executor must not ride on it.
    await run("ssh", [...sshArgs, "--", "true"]);
    const marker = join(dir, "pinned-wrong");
    // The first action waits for the host (255 is retried), but a refused key ends the run at once.
    const refused = executeActions(actionsWriting(marker), {
      sshArgs,
      secrets,
      hostKey: wrongKey,
      hostWaitMs: 600_000,
    });
    await expect(refused).rejects.toThrow(/step ready failed \(the host's key is not the pinned one\)/);
    await expect(refused).rejects.toThrow(HOST_KEY_REFUSED);
    expect(await exists(`${marker}.ready`)).toBe(false);

    // Each kind of action on its own, too.
    for (const action of actionsWriting(marker).slice(1)) {
      await expect(
        executeActions([{ ...action, waitForHost: undefined } as RemoteAction], {
          sshArgs,
          secrets,
          hostKey: wrongKey,
        }),
      ).rejects.toThrow(`step ${action.id} failed (the host's key is not the pinned one)`);
    }
    expect(await exists(`${marker}.copy`)).toBe(false);
    expect(await exists(`${marker}.step`)).toBe(false);
  });

  it("refuses a malformed pin before dialling", async () => {
    await expect(
      executeActions(actionsWriting(join(dir, "malformed")), { sshArgs, secrets, hostKey: "ssh-rsa AAAA" }),
    ).rejects.toThrow(/hostKey must be "ssh-ed25519 <base64>"/);
  });

  it("without a pin, the same options reach the host (what the pin prevents)", {
    timeout: 30_000,
  }, async () => {
    const marker = join(dir, "unpinned");
    await executeActions(actionsWriting(marker), { sshArgs, secrets });
    expect(await exists(`${marker}.step`)).toBe(true);
  });

  it("a pin placed after the caller's options would not hold (ssh keeps the first value)", async () => {
    // The broken copy of the executor: the same pin, appended instead of prepended. The command runs.
    const pin = await pinHostKey(wrongKey);
    const marker = join(dir, "appended-pin");
    try {
      await run("ssh", [...sshArgs.slice(0, -1), ...pin.args, sshArgs.at(-1) ?? "", "--", `touch ${marker}`]);
    } finally {
      await pin.cleanup();
    }
    expect(await exists(marker)).toBe(true);
  });
});
