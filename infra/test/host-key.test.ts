import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run } from "../../scripts/lib/box/run.js";
import { requireBinary } from "../../scripts/lib/processes.js";
import {
  CONSOLE_KEYS_BEGIN,
  CONSOLE_KEYS_END,
  consoleHostKeyCommand,
  ed25519PublicKey,
  hostKeyFromConsole,
  parseHostKey,
} from "../plan/host-key.js";
import { renderCloudConfig } from "../render/cloud-init.js";

// Reading the VM's SSH host key back from its console: the parser on console texts shaped like EC2's (a table),
// and the lookup script run for real with a stand-in `aws` on PATH that answers like the AWS CLI does.

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKJFV9iG2LeiLjqih5U8Ok/Wt5sOK65M49cfmEo1xXGs";
const OTHER = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICyAg29IutQIXJAiuZ+rYNJdOFh+f3ISqFSgCxehfxsA";
const ECDSA =
  "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg=";
const block = (...lines: string[]) => [CONSOLE_KEYS_BEGIN, ...lines, CONSOLE_KEYS_END].join("\n");
const BOOT = [
  "[    0.000000] Linux version 6.12.0-cloud-arm64",
  "[   12.345678] cloud-init[612]: Cloud-init v. 25.1.4 running 'modules:final'",
  "<14>Dec  2 06:00:01 cloud-init: #############################################################",
  "<14>Dec  2 06:00:01 cloud-init: -----BEGIN SSH HOST KEY FINGERPRINTS-----",
  "<14>Dec  2 06:00:01 cloud-init: 256 SHA256:kq3v1Yc0b0Xr0lQfTn3a9J5l0m6mGk5b1y0x7kq1d2w root@ip-10-42-1-10 (ED25519)",
  "<14>Dec  2 06:00:01 cloud-init: -----END SSH HOST KEY FINGERPRINTS-----",
].join("\n");

describe("host key from the console", () => {
  it.each([
    ["a block after the boot log", `${BOOT}\n${block(`${KEY} root@ip-10-42-1-10`)}\nlogin:`],
    ["CR line ends (serial console)", block(`${KEY} root@host`).replaceAll("\n", "\r\n")],
    ["a prefixed line (a syslog tag)", block(`ec2: ${KEY} root@host`)],
    ["the same key in two blocks", `${block(KEY)}\n${block(`${KEY} again`)}`],
    ["another type next to it (only Ed25519 is pinned)", block(ECDSA, KEY)],
  ])("finds the key: %s", (_name, text) => {
    expect(hostKeyFromConsole(text)).toBe(KEY);
  });

  it.each([
    ["no block at all", BOOT, /no complete/],
    ["a block cut off before its end", `${CONSOLE_KEYS_BEGIN}\n${KEY}`, /no complete/],
    ["a key outside any block", `${KEY}\n${block(ECDSA)}`, /lists no ssh-ed25519/],
    ["only an ECDSA key", block(ECDSA), /lists no ssh-ed25519/],
    ["a truncated key", block(KEY.slice(0, -4)), /lists no ssh-ed25519/],
    ["two different keys", block(KEY, OTHER), /2 different ssh-ed25519 host keys/],
  ])("refuses %s", (_name, text, message) => {
    expect(() => hostKeyFromConsole(text)).toThrow(message);
  });

  it("accepts only a canonical Ed25519 blob of the right length and type", () => {
    const [type, b64] = KEY.split(" ") as [string, string];
    expect(ed25519PublicKey(type, b64)).toBe(KEY);
    expect(ed25519PublicKey("ssh-rsa", b64)).toBeUndefined();
    // The blob names its own type: an ECDSA blob under an Ed25519 label is refused.
    expect(ed25519PublicKey("ssh-ed25519", ECDSA.split(" ")[1] as string)).toBeUndefined();
    const extra = Buffer.concat([Buffer.from(b64, "base64"), Buffer.from([0])]).toString("base64");
    expect(ed25519PublicKey(type, extra)).toBeUndefined();
    expect(parseHostKey(`${KEY} comment`)).toBe(KEY);
    expect(() => parseHostKey("ssh-ed25519 AAAA")).toThrow(/not an ssh-ed25519 public key/);
  });
});

describe("console lookup script", () => {
  let dir: string;
  const scriptFor = (waitSeconds: number) =>
    consoleHostKeyCommand({
      instanceId: "i-0123456789abcdef0",
      region: "eu-central-1",
      waitSeconds,
      intervalSeconds: 0.1,
    });
  /** A stand-in `aws`: logs its arguments, answers from a queue of console texts (the last one repeats). */
  async function fakeAws(answers: string[], exitCode = 0): Promise<string> {
    const bin = await mkdtemp(join(dir, "bin-"));
    for (const [i, text] of answers.entries()) await writeFile(join(bin, `answer-${i}`), text);
    await writeFile(
      join(bin, "aws"),
      [
        "#!/bin/sh",
        `echo "$*" >> ${bin}/calls`,
        `[ ${exitCode} -eq 0 ] || { echo "An error occurred (UnauthorizedOperation) when calling the GetConsoleOutput operation" >&2; exit ${exitCode}; }`,
        `n=$(wc -l < ${bin}/calls); i=$((n - 1)); [ -f ${bin}/answer-$i ] || i=${answers.length - 1}`,
        `cat ${bin}/answer-$i`,
        "",
      ].join("\n"),
    );
    await chmod(join(bin, "aws"), 0o755);
    return bin;
  }
  const runScript = (script: string, bin: string) =>
    run("sh", ["-c", script], { check: false, env: { PATH: `${bin}:/usr/bin:/bin` } });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "wagate-host-key-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("is shellcheck clean", async () => {
    await requireBinary("shellcheck", "shellcheck");
    const file = join(dir, "lookup.sh");
    await writeFile(file, `#!/bin/sh\n${scriptFor(900)}\n`);
    const result = await run("shellcheck", ["--severity=style", file], { check: false });
    expect(`${result.stdout}${result.stderr}`).toBe("");
  });

  it("waits until the block is complete, then prints the block only", async () => {
    const bin = await fakeAws([
      "None",
      `${BOOT}\n${CONSOLE_KEYS_BEGIN}\n`,
      `${BOOT}\n${block(`${KEY} root@ip-10-42-1-10`)}\nDebian GNU/Linux 13 ip-10-42-1-10 ttyS0\n`,
    ]);
    const result = await runScript(scriptFor(30), bin);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe(`${block(`${KEY} root@ip-10-42-1-10`)}\n`);
    expect(hostKeyFromConsole(result.stdout)).toBe(KEY);
    const calls = (await readFile(join(bin, "calls"), "utf8")).trim().split("\n");
    expect(calls).toHaveLength(3);
    expect(calls[0]).toBe(
      "ec2 get-console-output --region eu-central-1 --instance-id i-0123456789abcdef0 --query Output --output text --latest",
    );
  });

  it("stops at the deadline, naming the instance", async () => {
    const bin = await fakeAws([BOOT]);
    const result = await runScript(scriptFor(1), bin);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("no SSH host key on the console of i-0123456789abcdef0 after 1 s");
    expect(result.stdout).toBe("");
  });

  it("fails with the AWS CLI's own message when the call is refused", async () => {
    const bin = await fakeAws([BOOT], 254);
    const result = await runScript(scriptFor(30), bin);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("UnauthorizedOperation");
  });

  it("says what is missing without the AWS CLI", async () => {
    const empty = await mkdtemp(join(dir, "empty-"));
    const result = await runScript(scriptFor(30), empty);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("needs the AWS CLI (aws)");
  });
});

describe("user data", () => {
  it("asks cloud-init for one fresh Ed25519 host key, printed on the console, and holds no key", () => {
    const userData = renderCloudConfig();
    expect(userData.split("\n")[0]).toBe("#cloud-config");
    expect(userData).toContain("ssh_deletekeys: true");
    expect(userData).toContain("ssh_genkeytypes: [ed25519]");
    expect(userData).toContain("emit_keys_to_console: true");
    expect(userData).not.toMatch(/PRIVATE|ssh_keys|BEGIN/);
  });
});
