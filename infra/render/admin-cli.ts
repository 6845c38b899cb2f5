import {
  BACKUP_SERVICE,
  GATEWAY_DATA_DIR,
  GATEWAY_DATABASE_FILE,
  GATEWAY_UID,
  GATEWAY_UNIT,
  type PodmanOptions,
  podmanSchema,
} from "./systemd.js";

// `sudo wagate <command>` on the VM: the gateway's operator CLI (gateway/src/admin: token, revoke, status,
// backup, link), run inside the gateway's own container — `podman exec` while it runs, so the command has the
// gateway's environment (API_SECRET, JWT_*, settings) and its database — or, while it is stopped, a one-off container of
// the same image with the same env file, user, data volume and read-only root, and no network. The VM has no Node
// and no checkout; this script is all it needs. Two commands stay on the host: `backup` runs the backup unit
// (it uploads to S3 with the instance role, which the container never gets) and `logs` reads the journal.

/** Where the provisioning installs it (root 0755). */
export const ADMIN_CLI_PATH = "/usr/local/sbin/wagate";
/** The container's name (gatewayRunArgs in systemd.ts). */
export const GATEWAY_CONTAINER = "wagate-gateway";

export interface AdminCliInput {
  /** The gateway's image (pinned by digest, or the host-built one). */
  image: string;
  /** The gateway's env file (GATEWAY_ENV_FILE). */
  envFile: string;
  podman?: PodmanOptions;
}

const shellWord = (s: string) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`);

export function renderAdminCli(input: AdminCliInput): string {
  const podman = podmanSchema.parse(input.podman ?? {});
  const pinned = input.image.includes("@sha256:");
  const podmanCommand = ["/usr/bin/podman", ...podman.globalArgs].map(shellWord).join(" ");
  const oneOff = [
    "run",
    "--rm",
    "--interactive",
    `--pull=${pinned ? "missing" : "never"}`,
    `--cgroups=${podman.cgroups}`,
    "--network=none",
    `--user=${GATEWAY_UID}:${GATEWAY_UID}`,
    "--read-only",
    "--tmpfs=/tmp:rw,noexec,nosuid,nodev,size=64m",
    "--cap-drop=all",
    "--security-opt=no-new-privileges",
    `--volume=${GATEWAY_DATA_DIR}:/data:rw`,
    `--env-file=${input.envFile}`,
    `--env=DATABASE_PATH=/data/${GATEWAY_DATABASE_FILE}`,
    "--env=SANDBOX_OUTBOX_PATH=/data/sandbox-outbox.jsonl",
    "--entrypoint=wagate",
    ...podman.extraRunArgs,
    input.image,
  ]
    .map(shellWord)
    .join(" \\\n    ");
  return `#!/bin/bash
# Rendered by wagate (infra/render/admin-cli.ts); installed as ${ADMIN_CLI_PATH}. Do not edit on the host.
# sudo wagate <token|revoke|status|backup|link|logs|help> [options]: the gateway's operator CLI inside its container,
# with the gateway's environment and database. Secrets never pass through this script's arguments or output.
set -euo pipefail

if [[ $EUID -ne 0 ]]; then
  echo "wagate: run it as root: sudo wagate <command>" >&2
  exit 1
fi
podman=(${podmanCommand})

case "\${1:-}" in
backup)
  # On the host: the backup unit copies, checks and uploads to S3 with the instance role.
  if (($# > 1)); then
    echo "wagate backup: no options on the VM (it runs ${BACKUP_SERVICE})" >&2
    exit 2
  fi
  since=$(date '+%Y-%m-%d %H:%M:%S')
  if ! systemctl start ${BACKUP_SERVICE}; then
    journalctl -u ${BACKUP_SERVICE} --since "$since" --no-pager -o cat >&2 || true
    exit 1
  fi
  journalctl -u ${BACKUP_SERVICE} --since "$since" --no-pager -o cat
  exit 0
  ;;
logs)
  shift
  exec journalctl -u ${GATEWAY_UNIT} "$@"
  ;;
esac

if [[ "$("\${podman[@]}" container inspect --format '{{.State.Running}}' ${GATEWAY_CONTAINER} 2>/dev/null)" == true ]]; then
  exec "\${podman[@]}" exec --interactive ${GATEWAY_CONTAINER} wagate "$@"
fi
if [[ "\${1:-}" == link ]]; then
  echo "wagate link: the gateway is not running (${GATEWAY_UNIT}); linking needs it" >&2
  exit 1
fi
# The gateway is stopped: a one-off container of its image, same env file, user, volume and read-only root.
echo "wagate: the gateway is not running; running the command in a one-off container" >&2
exec "\${podman[@]}" ${oneOff} "$@"
`;
}
