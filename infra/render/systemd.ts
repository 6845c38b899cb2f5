import { z } from "zod";

// The systemd units of the VM: the gateway container (podman, one unit, the container recreated at each start
// as `podman generate systemd --new` does), and the daily SQLite backup. Paths are constants because the
// provisioning script, the backup script and the Pulumi components must agree on them.

/** Host user the container runs as, and owner of the data directory (a system uid that no Debian package uses). */
export const GATEWAY_USER = "wagate";
export const GATEWAY_UID = 10_001;
/** Data volume on the host (mounted at /data in the container): SQLite database and sandbox outbox. */
export const GATEWAY_DATA_DIR = "/var/lib/wagate";
export const GATEWAY_DATABASE_FILE = "wagate.db";
export const GATEWAY_CONTAINER_PORT = 3000;
export const GATEWAY_UNIT = "wagate-gateway.service";
export const BACKUP_SERVICE = "wagate-backup.service";
export const BACKUP_TIMER = "wagate-backup.timer";
/** Local copies kept on the host (also what a restore starts from when S3 is not reachable). */
export const BACKUP_DIR = "/var/backups/wagate";
export const BACKUP_SCRIPT = "/usr/local/lib/wagate/backup.sh";
export const BACKUP_ENV_FILE = "/etc/wagate/backup.env";
/** Image name used when the host builds the image itself (`podman build`). */
export const LOCAL_GATEWAY_IMAGE = "localhost/wagate-gateway:latest";

export const podmanSchema = z
  .object({
    /** Global podman flags (before `run`), e.g. `--runtime crun --cgroup-manager cgroupfs` inside a test box. */
    globalArgs: z.array(z.string().regex(/^[^%\n]+$/, "must be one line without %")).default([]),
    /**
     * `no-conmon` (what `podman generate systemd` uses: the container in the unit's cgroup) or `disabled`
     * (no cgroups at all: only where the host's cgroups cannot be delegated, such as a systemd-nspawn box).
     */
    cgroups: z.enum(["no-conmon", "disabled"]).default("no-conmon"),
    /**
     * `bridge`: the container in its own network namespace, its port published on the loopback address only.
     * `host`: no network namespace (hosts that cannot make one, such as a box sharing its host's network without
     * CAP_NET_ADMIN); the gateway then binds the loopback address itself.
     */
    network: z.enum(["bridge", "host"]).default("bridge"),
    /**
     * false only where the kernel keyring syscalls are blocked for services (a systemd-nspawn box): podman's
     * containers.conf then tells the runtime not to create a session keyring for the container.
     */
    keyring: z.boolean().default(true),
    /** Extra `podman run` flags for a particular host (test boxes: ulimits). Never used for secrets. */
    extraRunArgs: z.array(z.string().regex(/^[^%\n]+$/, "must be one line without %")).default([]),
    /** Extra `podman build` flags (test boxes: the locally built base image as a build argument). */
    extraBuildArgs: z.array(z.string().regex(/^[^\n]+$/, "must be one line")).default([]),
  })
  .strict();
export type PodmanOptions = z.input<typeof podmanSchema>;

export interface GatewayUnitInput {
  /** Image reference: `registry/name@sha256:…`, or LOCAL_GATEWAY_IMAGE when built on the host. */
  image: string;
  /** Loopback address and port nginx proxies to (EdgeLayout.upstream). */
  upstream: { host: string; port: number };
  envFile: string;
  podman?: PodmanOptions;
}

function quoteArg(arg: string): string {
  // systemd's ExecStart splits on whitespace and honours double quotes. `%` stays a specifier (%t, %n): the
  // only args that may carry one are ours; host-specific args are refused if they contain one (podmanSchema).
  return /[\s"'\\]/.test(arg) ? `"${arg.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"` : arg;
}

/** `podman run` arguments of the gateway container (also used by tests to check each hardening flag). */
export function gatewayRunArgs(input: GatewayUnitInput): string[] {
  const podman = podmanSchema.parse(input.podman ?? {});
  if (!/^127\.\d+\.\d+\.\d+$/.test(input.upstream.host)) {
    throw new Error(`gateway upstream host ${input.upstream.host} is not a loopback address`);
  }
  const pinned = input.image.includes("@sha256:");
  return [
    "run",
    "--cidfile=%t/%n.ctr-id",
    `--cgroups=${podman.cgroups}`,
    "--rm",
    "--sdnotify=conmon",
    "--replace",
    "--detach",
    "--name=wagate-gateway",
    // A pinned image is pulled once; a host-built one must never be looked up in a registry.
    `--pull=${pinned ? "missing" : "never"}`,
    `--user=${GATEWAY_UID}:${GATEWAY_UID}`,
    "--read-only",
    "--tmpfs=/tmp:rw,noexec,nosuid,nodev,size=64m",
    "--cap-drop=all",
    "--security-opt=no-new-privileges",
    "--pids-limit=512",
    `--volume=${GATEWAY_DATA_DIR}:/data:rw`,
    `--env-file=${input.envFile}`,
    ...(podman.network === "host"
      ? ["--network=host", `--env=HOST=${input.upstream.host}`, `--env=PORT=${input.upstream.port}`]
      : [
          `--publish=${input.upstream.host}:${input.upstream.port}:${GATEWAY_CONTAINER_PORT}`,
          "--env=HOST=0.0.0.0",
          `--env=PORT=${GATEWAY_CONTAINER_PORT}`,
          // Published ports reach the container from the bridge's gateway address, not from loopback: nginx's
          // X-Forwarded-For is trusted from any peer, which is only nginx (the port is published on loopback only).
          "--env=TRUST_PROXY=true",
        ]),
    `--env=DATABASE_PATH=/data/${GATEWAY_DATABASE_FILE}`,
    "--env=SANDBOX_OUTBOX_PATH=/data/sandbox-outbox.jsonl",
    "--log-driver=journald",
    ...podman.extraRunArgs,
    input.image,
  ];
}

export function renderGatewayUnit(input: GatewayUnitInput): string {
  const podman = podmanSchema.parse(input.podman ?? {});
  const bin = ["/usr/bin/podman", ...podman.globalArgs];
  const exec = (args: string[]) => [...bin, ...args].map(quoteArg).join(" ");
  return `# Rendered by wagate (infra/render/systemd.ts). Do not edit on the host: re-render.
[Unit]
Description=wagate gateway (podman container)
Documentation=https://github.com/wagate/wagate
Wants=network-online.target
After=network-online.target
RequiresMountsFor=${GATEWAY_DATA_DIR}

[Service]
Environment=PODMAN_SYSTEMD_UNIT=%n
Restart=on-failure
RestartSec=5s
TimeoutStartSec=120
TimeoutStopSec=30
ExecStartPre=/bin/rm -f %t/%n.ctr-id
ExecStart=${exec(gatewayRunArgs(input))}
ExecStop=${exec(["stop", "--ignore", "--time=20", "--cidfile=%t/%n.ctr-id"])}
ExecStopPost=${exec(["rm", "--force", "--ignore", "--time=20", "--cidfile=%t/%n.ctr-id"])}
Type=notify
NotifyAccess=all

[Install]
WantedBy=multi-user.target
`;
}

/** The daily backup: runs as the gateway's user (the SQLite files stay its own), uploads with the instance role. */
export function renderBackupService(): string {
  return `# Rendered by wagate (infra/render/systemd.ts).
[Unit]
Description=wagate: online backup of the gateway database to S3
After=network-online.target
Wants=network-online.target
RequiresMountsFor=${GATEWAY_DATA_DIR} ${BACKUP_DIR}

[Service]
Type=oneshot
User=${GATEWAY_USER}
Group=${GATEWAY_USER}
EnvironmentFile=${BACKUP_ENV_FILE}
# The aws cli wants a writable home for its caches; the user has none.
Environment=HOME=/tmp
ExecStart=/bin/bash ${BACKUP_SCRIPT}
UMask=0077
NoNewPrivileges=yes
PrivateTmp=yes
ProtectSystem=strict
ProtectHome=yes
ReadWritePaths=${GATEWAY_DATA_DIR} ${BACKUP_DIR}
Nice=10
IOSchedulingClass=idle
`;
}

export function renderBackupTimer(): string {
  return `# Rendered by wagate (infra/render/systemd.ts).
[Unit]
Description=wagate: daily database backup

[Timer]
OnCalendar=*-*-* 03:15:00 UTC
RandomizedDelaySec=30m
# A VM that was off at 03:15 backs up when it comes back.
Persistent=true

[Install]
WantedBy=timers.target
`;
}

/** Non-secret settings of the backup script (the instance role supplies AWS credentials). */
export function renderBackupEnv(input: {
  bucket: string;
  prefix: string;
  region: string;
  keepLocal?: number;
}): string {
  const bucket = z
    .string()
    .regex(/^([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])?$/, "must be an S3 bucket name (or empty: local copies only)")
    .parse(input.bucket);
  const prefix = z
    .string()
    .regex(/^[A-Za-z0-9._-]+$/)
    .parse(input.prefix);
  const region = z
    .string()
    .regex(/^[a-z]{2}(-[a-z]+)+-\d$/, "must be an AWS region")
    .parse(input.region);
  return `BACKUP_BUCKET=${bucket}\nBACKUP_PREFIX=${prefix}\nAWS_REGION=${region}\nAWS_DEFAULT_REGION=${region}\nBACKUP_KEEP_LOCAL=${input.keepLocal ?? 7}\n`;
}

/**
 * The backup script. `sqlite3 .backup` uses SQLite's online backup API: a consistent copy while the gateway
 * writes (WAL mode), unlike a file copy. The copy is checked, compressed, kept locally and uploaded.
 */
export function renderBackupScript(): string {
  return `#!/bin/bash
# Rendered by wagate (infra/render/systemd.ts). Run by ${BACKUP_SERVICE}; restore: see the README.
set -euo pipefail
# The defaults are the host's paths; the overrides exist for the tests.
db=\${WAGATE_DATABASE:-${GATEWAY_DATA_DIR}/${GATEWAY_DATABASE_FILE}}
backup_dir=\${WAGATE_BACKUP_DIR:-${BACKUP_DIR}}
if [[ ! -f "$db" ]]; then
  echo "no database at $db yet: nothing to back up"
  exit 0
fi
stamp=$(date -u +%Y%m%dT%H%M%SZ)
# Unique even when two runs share a second (the timer and a manual run).
copy=$(mktemp "$backup_dir/wagate-$stamp-XXXXXX.db")
name=$(basename "$copy").gz
sqlite3 "$db" ".timeout 10000" ".backup '$copy'"
check=$(sqlite3 "$copy" "PRAGMA integrity_check;")
if [[ "$check" != "ok" ]]; then
  echo "backup $copy failed its integrity check: $check" >&2
  rm -f "$copy"
  exit 1
fi
gzip -9 "$copy"
echo "backup written: $copy.gz"
if [[ -n "\${BACKUP_BUCKET:-}" ]]; then
  aws s3 cp --only-show-errors "$copy.gz" "s3://$BACKUP_BUCKET/$BACKUP_PREFIX/$name"
  echo "uploaded to s3://$BACKUP_BUCKET/$BACKUP_PREFIX/$name"
else
  echo "BACKUP_BUCKET is empty: local copy only"
fi
# Keep the newest BACKUP_KEEP_LOCAL local copies.
find "$backup_dir" -maxdepth 1 -name 'wagate-*.db.gz' -printf '%T@ %p\\n' | sort -rn |
  tail -n +"$(( \${BACKUP_KEEP_LOCAL:-7} + 1 ))" | cut -d' ' -f2- | xargs -r rm -f --
`;
}

/** containers.conf drop-in for hosts where `keyring` is false. */
export function renderContainersConf(): string {
  return "# Rendered by wagate (infra/render/systemd.ts): this host blocks the kernel keyring syscalls.\n[containers]\nkeyring = false\n";
}

/** certbot.service drop-in that trusts a private ACME server's listener (a Pebble in a test box; never on AWS). */
export function renderCertbotCaDropIn(caFile: string): string {
  return `# Rendered by wagate (infra/render/systemd.ts): the ACME server uses a private CA.
[Service]
Environment=REQUESTS_CA_BUNDLE=${caFile}
`;
}
