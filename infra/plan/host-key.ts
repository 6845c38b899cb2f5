import { shellQuote } from "./provision.js";

// The VM's SSH host key, known before anything is sent to it, without its private half ever leaving the VM.
//
// cloud-init generates one Ed25519 host key at first boot (render/cloud-init.ts asks for that type only) and
// prints its public half between fixed markers on the serial console. EC2's GetConsoleOutput returns that
// console over AWS's authenticated API: the deploying machine reads it there (consoleHostKeyCommand), this
// module's parser picks the key out (hostKeyFromConsole), and every remote command pins it (`hostKey`). Someone
// between the deploying machine and the Elastic IP cannot answer with another key: the connection is refused
// before any command or file is sent.

/** The only host key type the VM has, so that every SSH client negotiates the key that is pinned. */
export const HOST_KEY_TYPE = "ssh-ed25519";
export const CONSOLE_KEYS_BEGIN = "-----BEGIN SSH HOST KEY KEYS-----";
export const CONSOLE_KEYS_END = "-----END SSH HOST KEY KEYS-----";

/** How long the lookup waits for the key to appear on the console (first boot, cloud-init's final stage). */
export const HOST_KEY_WAIT_SECONDS = 900;

/**
 * `ssh-ed25519 <base64>` (no comment) when `base64` is a well-formed Ed25519 public key blob: the SSH wire
 * format's type string names the same type, followed by exactly 32 key bytes. Anything else: undefined.
 */
export function ed25519PublicKey(type: string, base64: string): string | undefined {
  if (type !== HOST_KEY_TYPE || !/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) return undefined;
  const blob = Buffer.from(base64, "base64");
  // A canonical encoding only: the same key cannot be written two ways.
  if (blob.toString("base64") !== base64 || blob.length !== 4 + HOST_KEY_TYPE.length + 4 + 32)
    return undefined;
  const typeLength = blob.readUInt32BE(0);
  if (typeLength !== HOST_KEY_TYPE.length) return undefined;
  if (blob.subarray(4, 4 + typeLength).toString("latin1") !== HOST_KEY_TYPE) return undefined;
  if (blob.readUInt32BE(4 + typeLength) !== 32) return undefined;
  return `${HOST_KEY_TYPE} ${base64}`;
}

/** Parses an `authorized_keys`-style line (`type base64 [comment]`) into the pinned form, or throws. */
export function parseHostKey(line: string): string {
  const [type = "", base64 = ""] = line.trim().split(/\s+/);
  const key = ed25519PublicKey(type, base64);
  if (!key) throw new Error(`not an ${HOST_KEY_TYPE} public key: ${JSON.stringify(line.slice(0, 80))}`);
  return key;
}

/**
 * The host key the VM printed on its console. Only lines inside complete key blocks count; console lines may
 * carry a prefix (a syslog tag, a timestamp) and CR line ends. Refuses, rather than guesses, when there is no
 * complete block, no Ed25519 key in it, or two different Ed25519 keys.
 */
export function hostKeyFromConsole(text: string): string {
  const keys = new Set<string>();
  let inside = false;
  let blocks = 0;
  for (const line of text.replaceAll("\r", "").split("\n")) {
    if (line.includes(CONSOLE_KEYS_BEGIN)) {
      inside = true;
      continue;
    }
    if (line.includes(CONSOLE_KEYS_END)) {
      if (inside) blocks++;
      inside = false;
      continue;
    }
    if (!inside) continue;
    const found = /(?:^|\s)(ssh-ed25519) ([A-Za-z0-9+/=]+)(?:\s|$)/.exec(line);
    const key = found ? ed25519PublicKey(found[1] as string, found[2] as string) : undefined;
    if (key) keys.add(key);
  }
  if (blocks === 0) throw new Error(`the console output holds no complete "${CONSOLE_KEYS_BEGIN}" block`);
  if (keys.size === 0) throw new Error(`the console output's host key block lists no ${HOST_KEY_TYPE} key`);
  if (keys.size > 1)
    throw new Error(
      `the console output lists ${keys.size} different ${HOST_KEY_TYPE} host keys; refusing to choose one`,
    );
  return [...keys][0] as string;
}

export interface ConsoleLookup {
  instanceId: string;
  region: string;
  waitSeconds?: number;
  /** Between two reads of the console. */
  intervalSeconds?: number;
}

/**
 * A POSIX shell script for the deploying machine: reads the instance's console with the AWS CLI until the host
 * key block is complete, and prints that block only (what Pulumi keeps in its state: public keys, nothing else).
 * `--latest` (Nitro instances) shows the console as it is now rather than as it was at the last state change.
 */
export function consoleHostKeyCommand(lookup: ConsoleLookup): string {
  const wait = lookup.waitSeconds ?? HOST_KEY_WAIT_SECONDS;
  const interval = lookup.intervalSeconds ?? 10;
  const read = `aws ec2 get-console-output --region ${shellQuote(lookup.region)} --instance-id ${shellQuote(lookup.instanceId)} --query Output --output text`;
  return [
    "set -eu",
    `command -v aws >/dev/null 2>&1 || { echo "wagate: reading the VM's SSH host key from its console needs the AWS CLI (aws) on this machine" >&2; exit 1; }`,
    `deadline=$(( $(date +%s) + ${wait} ))`,
    "while :; do",
    `  out=$(${read} --latest 2>/dev/null || ${read})`,
    `  block=$(printf '%s\\n' "$out" | tr -d '\\r' | sed -n '/${CONSOLE_KEYS_BEGIN}/,/${CONSOLE_KEYS_END}/p')`,
    `  case "$block" in *${shellQuote(CONSOLE_KEYS_END)}*) printf '%s\\n' "$block"; exit 0 ;; esac`,
    `  if [ "$(date +%s)" -ge "$deadline" ]; then echo ${shellQuote(`wagate: no SSH host key on the console of ${lookup.instanceId} after ${wait} s (cloud-init prints it once, at the instance's first boot)`)} >&2; exit 1; fi`,
    `  sleep ${interval}`,
    "done",
  ].join("\n");
}
