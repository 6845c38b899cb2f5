// Where the Debian box lives and how it is reached. One box at a time on this machine: its network namespace
// and veth pair have fixed names and addresses (a second `npm run box` refuses to start while one runs).

/** Cached roots, the apt cache and staged build contexts survive runs here (outside the repository). */
export const BOX_CACHE_DIR = process.env.WAGATE_BOX_CACHE ?? "/var/cache/wagate-box";
export const DEBIAN_MIRROR = "http://deb.debian.org/debian";
export const DEBIAN_SUITE = "trixie";
/** Bump when what the cached root holds changes: a new name builds a new root. */
export const ROOT_VERSION = "1";

export const NETNS = "wagate-box";
export const VETH_HOST = "wgbox-host";
export const VETH_BOX = "wgbox-box";
/** The host's side of the veth: the apt proxy and Pebble listen here, and only here. */
export const HOST_ADDRESS = "10.231.77.1";
/**
 * The allow-listing proxy's port on HOST_ADDRESS. Fixed, not ephemeral: the image build names the proxy in its
 * arguments, which are part of the image's source hash (provision.sh), so a new port every run rebuilt the image.
 */
export const PROXY_PORT = 3128;
/** The box ("the Elastic IP"). */
export const BOX_ADDRESS = "10.231.77.2";
/** A second client address on the host's side: the flood that fail2ban must ban comes from it. */
export const FLOOD_ADDRESS = "10.231.77.3";
export const PREFIX_LENGTH = 24;

/** Debian's cloud images log in as `admin` with passwordless sudo; so does the box. */
export const SSH_USER = "admin";
export const BOX_DOMAIN = "gateway.test";
/** Where the base image's root tarball is placed inside the box before boot. */
export const NODE_BASE_TAR_IN_BOX = "/var/lib/wagate-box/node-base.tar";
