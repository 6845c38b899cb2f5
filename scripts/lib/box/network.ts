import { existsSync } from "node:fs";
import {
  BOX_ADDRESS,
  FLOOD_ADDRESS,
  HOST_ADDRESS,
  NETNS,
  PREFIX_LENGTH,
  VETH_BOX,
  VETH_HOST,
} from "./constants.js";
import { run } from "./run.js";

// The box's own network namespace: a veth pair, the host's end with HOST_ADDRESS (and FLOOD_ADDRESS, a second
// client), the box's end with BOX_ADDRESS, no route anywhere else. fail2ban's nftables bans inside the box then
// touch only the box's namespace, never this machine's firewall; the box reaches the outside world only through
// the host-side proxy.

const ip = (...args: string[]) => run("ip", args, { label: `ip ${args.join(" ")}` });

export const netnsPath = () => `/run/netns/${NETNS}`;

/** Removes the namespace and veth if they exist (a box that crashed, or the end of a run). */
export async function removeBoxNetwork(): Promise<void> {
  await run("ip", ["link", "del", VETH_HOST], { check: false });
  if (existsSync(netnsPath())) await run("ip", ["netns", "del", NETNS], { check: false });
}

export async function createBoxNetwork(): Promise<void> {
  if (existsSync(netnsPath())) {
    const pids = (await run("ip", ["netns", "pids", NETNS], { check: false })).stdout.trim();
    if (pids)
      throw new Error(
        `a box is already running (network namespace ${NETNS} holds pids ${pids.split("\n").join(" ")})`,
      );
    await removeBoxNetwork();
  }
  await run("ip", ["link", "del", VETH_HOST], { check: false });
  try {
    await ip("netns", "add", NETNS);
    await ip("link", "add", VETH_HOST, "type", "veth", "peer", "name", VETH_BOX);
    await ip("link", "set", VETH_BOX, "netns", NETNS);
    await ip("addr", "add", `${HOST_ADDRESS}/${PREFIX_LENGTH}`, "dev", VETH_HOST);
    await ip("addr", "add", `${FLOOD_ADDRESS}/${PREFIX_LENGTH}`, "dev", VETH_HOST);
    await ip("link", "set", VETH_HOST, "up");
    await ip("-n", NETNS, "addr", "add", `${BOX_ADDRESS}/${PREFIX_LENGTH}`, "dev", VETH_BOX);
    await ip("-n", NETNS, "link", "set", VETH_BOX, "up");
    await ip("-n", NETNS, "link", "set", "lo", "up");
  } catch (error) {
    await removeBoxNetwork();
    throw error;
  }
}
