#!/bin/bash
# wagate host provisioning (Debian 13 "trixie"). Shipped verbatim in the host bundle next to `vars.sh`, which
# infra/render/provision.ts renders from the stack config. Run as root, one step at a time:
#   bash provision.sh <packages|data|nginx|certificate|fail2ban|gateway|backups|health>
# Every step is idempotent: packages are installed only when missing, files written only when their content
# changed, and a service is reloaded or restarted only when something it depends on changed. No secret is read
# from or written to this script; the gateway's secrets arrive as a 0600 env file copied separately, and the
# edge's token key as a 0600 file beside it.
set -euo pipefail
umask 022

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=vars.sh
source "$here/vars.sh"

log() { printf 'wagate[%s]: %s\n' "$step" "$*"; }
die() {
  printf 'wagate[%s]: error: %s\n' "$step" "$*" >&2
  exit 1
}

# put <source> <destination> <mode> [owner:group] — installs atomically; succeeds (0) only when it changed
# something, so callers write `if put ...; then reload; fi`.
put() {
  local src=$1 dest=$2 mode=$3 owner=${4:-root:root}
  if [[ -f "$dest" ]] && cmp -s "$src" "$dest" &&
    [[ "$(stat -c '%a %U:%G' "$dest")" == "${mode#0} $owner" ]]; then
    return 1
  fi
  install -D -m "$mode" -o "${owner%%:*}" -g "${owner##*:}" "$src" "$dest.wagate-new"
  mv -f "$dest.wagate-new" "$dest"
  log "changed $dest"
  return 0
}

# put_tree <bundle subdirectory> <destination directory> <mode> — every file below, same relative paths.
put_tree() {
  local from=$1 to=$2 mode=$3 changed=1 rel
  while IFS= read -r -d '' rel; do
    if put "$from/$rel" "$to/$rel" "$mode"; then changed=0; fi
  done < <(cd "$from" && find . -type f -printf '%P\0' | sort -z)
  return "$changed"
}

# systemd_reload_if <changed?> — `systemctl daemon-reload` only after a unit file changed.
daemon_reload_needed=1
unit() {
  if put "$BUNDLE_DIR/systemd/$1" "/etc/systemd/system/$1" 0644; then
    daemon_reload_needed=0
    return 0
  fi
  return 1
}
daemon_reload() {
  if ((daemon_reload_needed == 0)); then
    systemctl daemon-reload
    daemon_reload_needed=1
  fi
}

# `systemctl enable` is slow for units with a SysV script (it runs update-rc.d): only when not enabled yet.
enable() {
  local u
  for u in "$@"; do systemctl is-enabled --quiet "$u" 2>/dev/null || systemctl enable --quiet "$u"; done
}

step_packages() {
  local missing=() p installed
  # One dpkg-query for all of them (unknown packages are simply absent from its output).
  installed=$(dpkg-query -W -f='${Package} ${Status}\n' "${PACKAGES[@]}" 2>/dev/null | awk '/ ok installed$/ {print $1}' || true)
  for p in "${PACKAGES[@]}"; do
    grep -qxF "$p" <<<"$installed" || missing+=("$p")
  done
  if ((${#missing[@]} == 0)); then
    log "all ${#PACKAGES[@]} packages present"
    return
  fi
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Rebuilding man-db's index after every package is most of an install's triggers, for pages no one reads here.
  echo "man-db man-db/auto-update boolean false" | debconf-set-selections
  apt-get update -qq -o Acquire::Languages=none
  # No fsync per unpacked file: an instance whose install is cut short is replaced, not repaired (its data is on
  # the data volume), and the next run installs again whatever dpkg did not finish.
  apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confold \
    -o Dpkg::Options::=--force-unsafe-io "${missing[@]}"
}

# --- the data volume ----------------------------------------------------------------------------------------
# Everything that must outlive the instance lives on one block device of its own (data-volume.ts): mounted by
# filesystem UUID at DATA_MOUNT_DIR, one directory of it bind-mounted over each kept path. A device is formatted
# only when blkid finds nothing at all on it; a filesystem it does not expect stops the step, untouched.

FSTAB_FILE=/etc/fstab
fstab_changed=1
# fstab_entry <mount point> <line> — the one line for that mount point, replaced in place when it differs.
fstab_entry() {
  local target=$1 line=$2 tmp
  if [[ "$(awk -v t="$target" '$1 !~ /^#/ && $2 == t' "$FSTAB_FILE" 2>/dev/null)" == "$line" ]]; then return 1; fi
  tmp=$(mktemp "$FSTAB_FILE.wagate-XXXXXX")
  { awk -v t="$target" '$1 ~ /^#/ || $2 != t' "$FSTAB_FILE" 2>/dev/null || true; printf '%s\n' "$line"; } >"$tmp"
  chmod 0644 "$tmp"
  mv -f "$tmp" "$FSTAB_FILE"
  log "changed $FSTAB_FILE ($target)"
  fstab_changed=0
}

# Same directory (device and inode) on both sides: the bind mount is in place.
same_dir() { [[ -d "$1" && -d "$2" && "$(stat -c '%d:%i' "$1")" == "$(stat -c '%d:%i' "$2")" ]]; }

wait_for_device() {
  local i
  # An EBS attachment can complete after the instance booted: give it two minutes.
  for ((i = 0; i < 120; i++)); do
    [[ -b "$DATA_DEVICE" ]] && return 0
    sleep 1
  done
  die "no block device at $DATA_DEVICE after 120 s (is the data volume attached?)"
}

ensure_filesystem() {
  local dev=$1 probe rc=0
  probe=$(blkid -p -o export "$dev" 2>/dev/null) || rc=$?
  if ((rc == 2)); then
    # Nothing at all on it (no filesystem, no partition table, no RAID or LVM signature): a new volume.
    log "formatting $DATA_DEVICE as ext4 (it carries no filesystem)"
    mkfs.ext4 -q -L "$DATA_LABEL" -m 1 "$dev"
    return
  fi
  ((rc == 0)) || die "blkid could not tell what $DATA_DEVICE holds (exit $rc): refusing to touch it"
  grep -qx 'TYPE=ext4' <<<"$probe" ||
    die "$DATA_DEVICE holds $(grep -E '^(PT)?TYPE=' <<<"$probe" | paste -sd' ' -), not an ext4 filesystem: refusing to use or format it"
}

# keep_on_volume <name> <path> — <DATA_MOUNT_DIR>/<name> bind-mounted at <path>. A volume that has no <name>
# yet receives what the instance holds there (the move of an existing host onto its first data volume).
keep_on_volume() {
  local path=$2 src="$DATA_MOUNT_DIR/$1"
  if [[ ! -d "$src" ]]; then
    install -d -m 0755 "$src.wagate-new"
    if [[ -d "$path" ]] && ! mountpoint -q "$path" && [[ -n "$(ls -A "$path")" ]]; then
      if [[ "$path" == "$GATEWAY_DATA_DIR" ]] && systemctl is-active --quiet "$GATEWAY_UNIT"; then
        log "stopping the gateway to move its data"
        systemctl stop "$GATEWAY_UNIT"
      fi
      log "moving $path onto the data volume"
      cp -a "$path/." "$src.wagate-new/"
    fi
    [[ -d "$path" ]] && chmod --reference="$path" "$src.wagate-new" && chown --reference="$path" "$src.wagate-new"
    mv "$src.wagate-new" "$src"
    log "changed $src"
  fi
  fstab_entry "$path" "$src $path none bind,nofail,x-systemd.requires-mounts-for=$DATA_MOUNT_DIR 0 0" || true
  install -d -m 0755 "$path"
  if ! same_dir "$src" "$path"; then
    # Whatever the root volume holds at <path> (a package's defaults) stays hidden under the mount.
    log "changed $path: bind-mounted from the data volume"
    mount --bind "$src" "$path"
  fi
}

step_data() {
  if [[ -z "$DATA_DEVICE" ]]; then
    log "no data volume configured: data stays on the root volume"
    return
  fi
  wait_for_device
  local dev uuid kept
  dev=$(readlink -f "$DATA_DEVICE")
  ensure_filesystem "$dev"
  uuid=$(blkid -p -o value -s UUID "$dev")
  [[ -n "$uuid" ]] || die "the filesystem on $DATA_DEVICE has no UUID"
  fstab_entry "$DATA_MOUNT_DIR" "UUID=$uuid $DATA_MOUNT_DIR ext4 defaults,nofail,noatime 0 2" || true
  install -d -m 0755 "$DATA_MOUNT_DIR"
  if ! mountpoint -q "$DATA_MOUNT_DIR"; then
    log "changed $DATA_MOUNT_DIR: mounting $DATA_DEVICE"
    mount -t ext4 -o defaults,noatime "$dev" "$DATA_MOUNT_DIR"
  fi
  [[ "$(mountpoint -d "$DATA_MOUNT_DIR")" == "$(mountpoint -x "$dev")" ]] ||
    die "$DATA_MOUNT_DIR is mounted from another device than $DATA_DEVICE"
  # A volume grown on AWS (a larger `dataVolumeSize`): ext4 grows online.
  local fs_bytes dev_bytes
  fs_bytes=$(dumpe2fs -h "$dev" 2>/dev/null | awk -F: '/^Block count/ {c=$2} /^Block size/ {s=$2} END {print c*s}')
  dev_bytes=$(blockdev --getsize64 "$dev")
  if ((dev_bytes - fs_bytes > 16 * 1024 * 1024)); then
    log "changed $DATA_MOUNT_DIR: growing the filesystem to the volume's $((dev_bytes / 1024 / 1024)) MiB"
    resize2fs "$dev" >/dev/null 2>&1
  fi
  for kept in "${DATA_KEPT[@]}"; do keep_on_volume "${kept%%:*}" "${kept#*:}"; done
  # systemd reads fstab into mount units; units that read kept paths wait for them (the volume is nofail).
  unit nginx.service.d/wagate-data.conf || true
  unit certbot.service.d/wagate-data.conf || true
  if ((fstab_changed == 0)); then daemon_reload_needed=0; fi
  daemon_reload
}

# nginx cannot listen on 443 without a certificate: until certbot has issued one, a throwaway self-signed
# certificate sits where certbot will put the real one, marked so the certificate step knows to replace it.
bootstrap_certificate() {
  local live
  live=$(dirname "$CERT_FILE")
  [[ -f "$CERT_FILE" ]] && return 0
  log "no certificate yet: a self-signed one until certbot has issued the real one"
  install -d -m 0700 "$live"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=$DOMAIN" -addext "subjectAltName=DNS:$DOMAIN" \
    -keyout "$KEY_FILE" -out "$CERT_FILE" 2>/dev/null
  touch "$live/.wagate-bootstrap"
}

nginx_running() { systemctl is-active --quiet nginx; }

# The edge's token key (written from stdin by the stack before this step, like the gateway's env file): read by
# nginx's master, as root, only when it loads its configuration. Sets key_digest; succeeds (0) when the key differs
# from the one nginx last loaded, so that a rotated gateway secret reloads nginx although no bundle file changed.
key_digest=
identity_key_changed() {
  [[ -f "$EDGE_IDENTITY_KEY_FILE" ]] || die "missing $EDGE_IDENTITY_KEY_FILE (the stack writes it before this step)"
  chown root:root "$EDGE_IDENTITY_KEY_FILE"
  chmod 0600 "$EDGE_IDENTITY_KEY_FILE"
  key_digest=$(sha256sum <"$EDGE_IDENTITY_KEY_FILE" | cut -d' ' -f1)
  [[ "$(cat "$identity_state" 2>/dev/null)" != "$key_digest" ]]
}
identity_state=/var/lib/wagate-provision/edge-identity-key.state

step_nginx() {
  local d changed=1
  for d in "${NGINX_DIRS[@]}"; do install -d -m 0755 "$d"; done
  install -d -m 0700 -o "$NGINX_USER" -g "$NGINX_USER" "$NGINX_MODSECURITY_TMP"
  if put_tree "$BUNDLE_DIR/nginx" "$NGINX_CONF_DIR" 0644; then changed=0; fi
  if identity_key_changed; then
    log "changed the edge's token key ($EDGE_IDENTITY_KEY_FILE)"
    changed=0
  fi
  # Read by logrotate's daily timer; nginx needs no reload for it.
  put "$BUNDLE_DIR/logrotate/access-log" "$NGINX_LOGROTATE_FILE" 0644 || true
  # The allocator nginx's master is started with (nginx-allocator.ts): a reload keeps the running master and its
  # allocator, so a changed drop-in restarts nginx.
  local restart=1
  if unit nginx.service.d/wagate-allocator.conf; then restart=0; fi
  daemon_reload
  bootstrap_certificate
  # `nginx -t` loads the whole CRS (seconds): only when something changed or nginx is down.
  if ((changed == 0)) || ! nginx_running; then
    local out
    if ! out=$(nginx -t -q 2>&1); then
      printf '%s\n' "$out" >&2
      die "nginx -t refused the rendered configuration"
    fi
  fi
  enable nginx
  if ! nginx_running; then
    log "starting nginx"
    systemctl start nginx
  elif ((restart == 0)); then
    log "restarting nginx (its environment changed)"
    systemctl restart nginx
  elif ((changed == 0)); then
    log "reloading nginx"
    systemctl reload nginx
  else
    log "nginx unchanged"
  fi
  install -d -m 0700 "$(dirname "$identity_state")"
  echo "$key_digest" >"$identity_state"
}

# The lineage certbot keeps is for this domain and this ACME server (a changed `domain` or a move from Let's
# Encrypt staging to production must get a new certificate, not keep renewing the old one).
lineage_matches() {
  local conf="$LETSENCRYPT_DIR/renewal/$CERT_NAME.conf"
  [[ -f "$conf" ]] || return 1
  grep -qxF "server = $ACME_SERVER_URL" "$conf" || return 1
  openssl x509 -noout -ext subjectAltName -in "$CERT_FILE" 2>/dev/null | grep -qE "DNS:${DOMAIN//./\\.}(,|$)"
}

step_certificate() {
  local live
  live=$(dirname "$CERT_FILE")
  put "$BUNDLE_DIR/certbot/cli.ini" "$LETSENCRYPT_DIR/cli.ini" 0644 || true
  put "$BUNDLE_DIR/certbot/deploy-hook.sh" "$LETSENCRYPT_DIR/renewal-hooks/deploy/wagate-reload-nginx" 0755 || true
  if [[ -f "$BUNDLE_DIR/certbot/acme-ca.pem" ]]; then
    put "$BUNDLE_DIR/certbot/acme-ca.pem" "$ACME_CA_FILE" 0644 || true
    if unit certbot.service.d/wagate-acme-ca.conf; then :; fi
    export REQUESTS_CA_BUNDLE=$ACME_CA_FILE
  fi
  daemon_reload
  if lineage_matches; then
    log "certificate $CERT_NAME for $DOMAIN present; Debian's certbot.timer renews it"
  else
    local args=()
    mapfile -t args <"$BUNDLE_DIR/certbot/certonly.args"
    if [[ -f "$LETSENCRYPT_DIR/renewal/$CERT_NAME.conf" ]]; then
      # Same lineage, new domain or ACME server: certbot replaces it only when told to renew now.
      log "certificate $CERT_NAME is for another domain or ACME server: replacing it"
      args+=(--force-renewal)
    elif [[ -f "$live/.wagate-bootstrap" ]]; then
      # Only our own throwaway certificate may be removed: certbot refuses to create a lineage over a live dir.
      # nginx keeps serving the one it loaded until the reload below.
      rm -rf "$live"
    fi
    log "requesting a certificate for $DOMAIN"
    if ! certbot "${args[@]}"; then
      bootstrap_certificate
      die "certbot could not obtain a certificate for $DOMAIN (DNS pointing here? port 80 open?)"
    fi
    systemctl reload nginx
  fi
  enable certbot.timer
  systemctl is-active --quiet certbot.timer || systemctl start certbot.timer
}

step_fail2ban() {
  local changed=1
  if put_tree "$BUNDLE_DIR/fail2ban" /etc/fail2ban 0644; then changed=0; fi
  if ((changed == 0)) || ! systemctl is-active --quiet fail2ban; then
    fail2ban-client --test >/dev/null || die "fail2ban refused the rendered configuration"
  fi
  enable fail2ban
  if ! systemctl is-active --quiet fail2ban; then
    log "starting fail2ban"
    systemctl restart fail2ban
  elif ((changed == 0)); then
    log "reloading fail2ban"
    fail2ban-client reload >/dev/null
  else
    log "fail2ban unchanged"
  fi
}

ensure_gateway_user() {
  if ! getent group "$GATEWAY_USER" >/dev/null; then groupadd --system --gid "$GATEWAY_UID" "$GATEWAY_USER"; fi
  if ! getent passwd "$GATEWAY_USER" >/dev/null; then
    useradd --system --uid "$GATEWAY_UID" --gid "$GATEWAY_UID" --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin "$GATEWAY_USER"
  fi
  install -d -m 0750 -o "$GATEWAY_USER" -g "$GATEWAY_USER" "$GATEWAY_DATA_DIR"
}

# The image: pulled once when pinned by digest, otherwise built here from the copied sources, again only when
# their content changed (the hash travels as an image label). Sets image_id. One podman call when nothing changed
# (each costs a fraction of a second: most of a no-change run of this step).
image_id=
ensure_gateway_image() {
  if [[ "$GATEWAY_IMAGE" == *@sha256:* ]]; then
    if ! image_id=$(podman "${PODMAN_GLOBAL_ARGS[@]}" image inspect --format '{{.Id}}' "$GATEWAY_IMAGE" 2>/dev/null); then
      log "pulling $GATEWAY_IMAGE"
      podman "${PODMAN_GLOBAL_ARGS[@]}" pull --quiet "$GATEWAY_IMAGE" >/dev/null
      image_id=$(podman "${PODMAN_GLOBAL_ARGS[@]}" image inspect --format '{{.Id}}' "$GATEWAY_IMAGE")
    fi
    return
  fi
  [[ -f "$GATEWAY_BUILD_CONTEXT/$GATEWAY_DOCKERFILE" ]] ||
    die "no pinned image and no sources at $GATEWAY_BUILD_CONTEXT/$GATEWAY_DOCKERFILE to build one"
  local source_hash current
  # The build's arguments are part of what it makes (a test box names its base image there): a new base, a new image.
  source_hash=$(
    cd "$GATEWAY_BUILD_CONTEXT" && {
      find . -type f -not -path './node_modules/*' -print0 | sort -z | xargs -0 sha256sum
      ((${#PODMAN_BUILD_ARGS[@]} == 0)) || printf '%s\n' "${PODMAN_BUILD_ARGS[@]}"
    } | sha256sum | cut -d' ' -f1
  )
  current=$(podman "${PODMAN_GLOBAL_ARGS[@]}" image inspect --format '{{.Id}} {{ index .Labels "org.wagate.source" }}' \
    "$GATEWAY_IMAGE" 2>/dev/null || true)
  if [[ -n "$current" && "${current#* }" == "$source_hash" ]]; then
    image_id=${current%% *}
    log "image $GATEWAY_IMAGE is up to date"
    return
  fi
  log "building $GATEWAY_IMAGE"
  podman "${PODMAN_GLOBAL_ARGS[@]}" build --quiet "${PODMAN_BUILD_ARGS[@]}" --label "org.wagate.source=$source_hash" \
    --tag "$GATEWAY_IMAGE" --file "$GATEWAY_BUILD_CONTEXT/$GATEWAY_DOCKERFILE" "$GATEWAY_BUILD_CONTEXT" >/dev/null
  image_id=$(podman "${PODMAN_GLOBAL_ARGS[@]}" image inspect --format '{{.Id}}' "$GATEWAY_IMAGE")
}

wait_for_gateway() {
  local i
  for ((i = 0; i < 60; i++)); do
    if curl -fsS -o /dev/null --max-time 2 "http://$GATEWAY_UPSTREAM/healthz"; then return 0; fi
    sleep 1
  done
  journalctl -u "$GATEWAY_UNIT" -n 30 --no-pager >&2 || true
  die "the gateway did not answer on http://$GATEWAY_UPSTREAM/healthz"
}

step_gateway() {
  ensure_gateway_user
  [[ -f "$GATEWAY_ENV_FILE" ]] || die "missing $GATEWAY_ENV_FILE (the stack copies it before this step)"
  chown root:root "$GATEWAY_ENV_FILE"
  chmod 0600 "$GATEWAY_ENV_FILE"
  local containers_conf=/etc/containers/containers.conf.d/wagate.conf
  if [[ -f "$BUNDLE_DIR/containers/wagate.conf" ]]; then
    put "$BUNDLE_DIR/containers/wagate.conf" "$containers_conf" 0644 || true
  elif [[ -f "$containers_conf" ]]; then
    rm -f "$containers_conf"
    log "removed $containers_conf"
  fi
  ensure_gateway_image
  put "$BUNDLE_DIR/admin/wagate" "$ADMIN_CLI" 0755 || true
  unit "$GATEWAY_UNIT" || true
  daemon_reload
  # Restart only when what the container runs with changed: unit, secrets, podman settings, image.
  local state_file=/var/lib/wagate-provision/gateway.state state
  state=$(cat "/etc/systemd/system/$GATEWAY_UNIT" "$GATEWAY_ENV_FILE" <(cat "$containers_conf" 2>/dev/null || true) \
    <(echo "$image_id") | sha256sum | cut -d' ' -f1)
  install -d -m 0700 /var/lib/wagate-provision
  enable "$GATEWAY_UNIT"
  if systemctl is-active --quiet "$GATEWAY_UNIT" && [[ -f "$state_file" && "$(cat "$state_file")" == "$state" ]]; then
    log "gateway unchanged"
  else
    log "(re)starting the gateway"
    systemctl restart "$GATEWAY_UNIT"
    echo "$state" >"$state_file"
  fi
  wait_for_gateway
}

step_backups() {
  ensure_gateway_user
  install -d -m 0700 -o "$GATEWAY_USER" -g "$GATEWAY_USER" "$BACKUP_DIR"
  put "$BUNDLE_DIR/backup/backup.sh" "$BACKUP_SCRIPT" 0755 || true
  put "$BUNDLE_DIR/backup/backup.env" "$BACKUP_ENV_FILE" 0644 || true
  unit "$BACKUP_SERVICE" || true
  if unit "$BACKUP_TIMER"; then
    daemon_reload
    systemctl restart "$BACKUP_TIMER"
  fi
  daemon_reload
  enable "$BACKUP_TIMER"
  systemctl is-active --quiet "$BACKUP_TIMER" || systemctl start "$BACKUP_TIMER"
}

step_health() {
  wait_for_gateway
  local code
  code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 --insecure \
    --resolve "$DOMAIN:$HTTPS_PORT:127.0.0.1" "https://$DOMAIN:$HTTPS_PORT/healthz") || true
  # --insecure: this probes the route through nginx; the certificate chain is checked by certbot and clients.
  [[ "$code" == 200 ]] || die "https://$DOMAIN/healthz through nginx answered ${code:-nothing}, not 200"
  local failed
  failed=$(systemctl --failed --no-legend --plain | awk '{print $1}' | tr '\n' ' ')
  [[ -z "$failed" ]] || die "failed units: $failed"
  log "healthy: https://$DOMAIN/healthz answers 200"
}

step=${1:-}
# Sourced (by the tests, to exercise put/put_tree on a scratch directory): define the functions, run nothing.
if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then return 0; fi
case "$step" in
packages | data | nginx | certificate | fail2ban | gateway | backups | health) "step_$step" ;;
*)
  step=usage
  die "usage: provision.sh <packages|data|nginx|certificate|fail2ban|gateway|backups|health>"
  ;;
esac
