import { posix } from "node:path";
import { ACCESS_LOG_FILE } from "./nginx.js";

// Debian's /etc/logrotate.d/nginx rotates `/var/log/nginx/*.log` (error.log, modsec_audit.log): the JSON access
// log, which fail2ban and `npm run suspicious-ips` read, is not a `.log` and would grow without bound. This rule
// rotates it the way Debian rotates the others, daily, 14 days kept. It must not name a file Debian's rule also
// matches: logrotate refuses a log listed twice.

export interface AccessLogRotation {
  /** The edge's log directory (EdgeLayout.logDir). */
  readonly logDir: string;
  /** Owner of a new log file: nginx's worker user (Debian: www-data), group adm as Debian creates them. */
  readonly user: string;
  /** Makes nginx reopen its logs (SIGUSR1). Debian's own rule uses `invoke-rc.d nginx rotate`. */
  readonly reopenCommand: string;
}

/** Where the rule is installed on the VM. */
export const ACCESS_LOG_LOGROTATE_FILE = "/etc/logrotate.d/wagate-nginx-access";

export function renderAccessLogRotation(options: AccessLogRotation): string {
  return `# Rendered by wagate (infra/render/logrotate.ts). The JSON access log: Debian's nginx rule covers only *.log.
${posix.join(options.logDir, ACCESS_LOG_FILE)} {
	daily
	missingok
	rotate 14
	compress
	delaycompress
	notifempty
	create 0640 ${options.user} adm
	postrotate
		${options.reopenCommand} >/dev/null 2>&1 || true
	endscript
}
`;
}
