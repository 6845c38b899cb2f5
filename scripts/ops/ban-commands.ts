import { BlockList, isIP } from "node:net";
import { WAF_JAIL } from "../../infra/render/fail2ban.js";

// The commands an operator would run to ban clients, printed for review and never executed here. They act on
// what fail2ban itself made on the VM (infra/render/fail2ban.ts bans with Debian's `nftables-multiport` action,
// whose table is `inet f2b-table` and whose sets are `addr-set-<jail>` / `addr6-set-<jail>`): no table of our
// own that nothing creates. Every IP is re-validated before it is put in a command line, so a crafted log line
// can never inject shell syntax, and loopback and the operator's trusted ranges are never named.

/** The edge's WAF jail: its ban time (an hour) and nftables action apply to a manual ban as well. */
export const DEFAULT_JAIL = WAF_JAIL;

/** What Debian's fail2ban `nftables` action (nftables.conf, [Init]) creates for a jail. */
export interface NftablesTarget {
  /** Family and table, e.g. `inet f2b-table`. */
  table: string;
  set4: string;
  set6: string;
}

/** fail2ban's own table and the jail's two sets (action.d/nftables.conf: table, addr_set, [Init?family=inet6]). */
export function fail2banNftTarget(jail: string): NftablesTarget {
  if (!NAME.test(jail)) throw new Error(`bad fail2ban jail name: ${jail}`);
  return { table: "inet f2b-table", set4: `addr-set-${jail}`, set6: `addr6-set-${jail}` };
}

const NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** Never banned: loopback in both families, and IPv4 loopback written as an IPv4-mapped IPv6 address. */
export const LOOPBACK_CIDRS = ["127.0.0.0/8", "::1/128", "::ffff:127.0.0.0/104"] as const;

function checkedIp(ip: string): string {
  if (isIP(ip) === 0) throw new Error(`not an IP address: ${JSON.stringify(ip)}`);
  return ip;
}

/** A CIDR list (`203.0.113.0/24`, `2001:db8::/32`, or a single address) as a BlockList; throws naming a bad one. */
export function trustedRanges(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const cidr of [...LOOPBACK_CIDRS, ...cidrs]) {
    const [address = "", prefixText, ...rest] = cidr.trim().split("/");
    const family = isIP(address);
    const width = family === 4 ? 32 : 128;
    const prefix = prefixText === undefined ? width : Number(prefixText);
    if (family === 0 || rest.length > 0 || !Number.isInteger(prefix) || prefix < 0 || prefix > width)
      throw new Error(`not a CIDR block: ${JSON.stringify(cidr)} (e.g. 203.0.113.0/24)`);
    list.addSubnet(address, prefix, family === 4 ? "ipv4" : "ipv6");
  }
  return list;
}

/** True when a ban command must never name `ip`: loopback or a trusted range. */
export function isTrusted(ip: string, trusted: BlockList): boolean {
  const family = isIP(ip);
  if (family === 0) return false;
  if (family === 6 && /^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(ip)) {
    const v4 = ip.slice(ip.lastIndexOf(":") + 1);
    if (trusted.check(v4, "ipv4")) return true;
  }
  return trusted.check(ip, family === 4 ? "ipv4" : "ipv6");
}

export function fail2banCommands(ips: readonly string[], jail: string): string[] {
  if (!NAME.test(jail)) throw new Error(`bad fail2ban jail name: ${jail}`);
  return ips.map((ip) => `fail2ban-client set ${jail} banip ${checkedIp(ip)}`);
}

/**
 * `nft add element` into the jail's sets. fail2ban's sets have no timeout, so such a ban lasts until fail2ban
 * restarts or someone deletes the element; `fail2ban-client set <jail> banip` is the ban that expires.
 */
export function nftablesCommands(ips: readonly string[], target: NftablesTarget): string[] {
  const [family, table, ...rest] = target.table.split(" ");
  if (!family || !table || rest.length || !/^(inet|ip|ip6)$/.test(family) || !NAME.test(table)) {
    throw new Error(`bad nftables table: ${target.table} (expected e.g. "inet f2b-table")`);
  }
  if (!NAME.test(target.set4) || !NAME.test(target.set6)) throw new Error("bad nftables set name");
  return ips.map((ip) => {
    const set = isIP(checkedIp(ip)) === 4 ? target.set4 : target.set6;
    return `nft add element ${family} ${table} ${set} '{ ${ip} }'`;
  });
}
