import { isIP } from "node:net";
import { WAF_JAIL } from "../../infra/render/fail2ban.js";

// The commands an operator would run to ban clients, printed for review and never executed here. Every IP
// is re-validated before it is put in a command line, so a crafted log line can never inject shell syntax.

export interface NftablesTarget {
  /** `inet wagate` style family + table. */
  table: string;
  set4: string;
  set6: string;
}

/** The edge's WAF jail: its ban time (an hour) and nftables action apply to a manual ban as well. */
export const DEFAULT_JAIL = WAF_JAIL;
export const DEFAULT_NFT: NftablesTarget = { table: "inet wagate", set4: "banned4", set6: "banned6" };

const NAME = /^[A-Za-z0-9_-]{1,64}$/;
const DURATION = /^\d+[smhd]$/;

function checkedIp(ip: string): string {
  if (isIP(ip) === 0) throw new Error(`not an IP address: ${JSON.stringify(ip)}`);
  return ip;
}

export function fail2banCommands(ips: readonly string[], jail: string): string[] {
  if (!NAME.test(jail)) throw new Error(`bad fail2ban jail name: ${jail}`);
  return ips.map((ip) => `fail2ban-client set ${jail} banip ${checkedIp(ip)}`);
}

export function nftablesCommands(ips: readonly string[], target: NftablesTarget, banTime?: string): string[] {
  const [family, table, ...rest] = target.table.split(" ");
  if (!family || !table || rest.length || !/^(inet|ip|ip6)$/.test(family) || !NAME.test(table)) {
    throw new Error(`bad nftables table: ${target.table} (expected e.g. "inet wagate")`);
  }
  if (!NAME.test(target.set4) || !NAME.test(target.set6)) throw new Error("bad nftables set name");
  if (banTime !== undefined && !DURATION.test(banTime)) throw new Error(`bad ban time: ${banTime} (e.g. 1h)`);
  const timeout = banTime ? ` timeout ${banTime}` : "";
  return ips.map((ip) => {
    const set = isIP(checkedIp(ip)) === 4 ? target.set4 : target.set6;
    return `nft add element ${family} ${table} ${set} '{ ${ip}${timeout} }'`;
  });
}
