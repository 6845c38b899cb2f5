// The security group's rules as data, so that what is open is decided (and tested) in one place.

export interface SecurityGroupRule {
  description: string;
  protocol: "tcp" | "udp" | "icmp" | "-1";
  fromPort: number;
  toPort: number;
  cidrBlocks: string[];
}

export const WHOLE_INTERNET_V4 = "0.0.0.0/0";

/**
 * Ingress: HTTP (ACME challenges and the redirect) and HTTPS from anywhere, SSH only from the admin ranges.
 * Egress: HTTP and HTTPS — Debian's mirrors, Let's Encrypt, the WhatsApp Graph API, S3 for backups and the
 * customers' HTTPS webhooks — and NTP, in case the image's time client uses public pools rather than Amazon Time
 * Sync (certificates and JWT expiry need a right clock). The VPC's DNS resolver, Amazon Time Sync and the
 * metadata service are link-local services that security groups do not filter, so they need no rule; anything
 * else (SMTP, arbitrary ports) stays closed.
 */
export function securityGroupRules(adminCidrs: readonly string[]): {
  ingress: SecurityGroupRule[];
  egress: SecurityGroupRule[];
} {
  if (adminCidrs.length === 0) throw new Error("adminCidrs must not be empty");
  const tcp = (description: string, port: number, cidrBlocks: string[]): SecurityGroupRule => ({
    description,
    protocol: "tcp",
    fromPort: port,
    toPort: port,
    cidrBlocks,
  });
  return {
    ingress: [
      tcp("HTTP: ACME challenges and redirect to HTTPS", 80, [WHOLE_INTERNET_V4]),
      tcp("HTTPS: the gateway behind nginx", 443, [WHOLE_INTERNET_V4]),
      tcp("SSH from the admin ranges", 22, [...adminCidrs]),
    ],
    egress: [
      tcp("HTTP: Debian package mirrors", 80, [WHOLE_INTERNET_V4]),
      tcp("HTTPS: ACME, WhatsApp Graph API, S3, webhooks", 443, [WHOLE_INTERNET_V4]),
      { description: "NTP", protocol: "udp", fromPort: 123, toPort: 123, cidrBlocks: [WHOLE_INTERNET_V4] },
    ],
  };
}

/** The VPC and its one public subnet. */
export const VPC_CIDR = "10.42.0.0/16";
export const PUBLIC_SUBNET_CIDR = "10.42.1.0/24";
