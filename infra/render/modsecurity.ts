import { posix } from "node:path";
import type { EdgeLayout } from "./layout.js";
import type { Waf } from "./settings.js";

// ModSecurity v3 + OWASP CRS 3.3 (Debian's `modsecurity-crs`) for a Node JSON API. One rules file, loaded once
// at nginx's `http` level. What is loaded and what is excluded is chosen here, in one place:
//
// - Engine: blocking, JSON body processor, no response body inspection (the API answers JSON it built itself;
//   the RESPONSE-95x leakage rules look for PHP/Java/IIS/SQL error pages a Node gateway does not produce).
// - CRS files: only the families that can matter for a Node JSON API behind nginx. Left out: 903.x (PHP
//   application exclusions), 905 (Apache localhost exceptions), 910 (IP reputation: no RBL/GeoIP here), 912 (DoS:
//   nginx's limit_req does it), 922 (multipart: the API accepts JSON only), 933 (PHP), 944 (Java), every
//   RESPONSE-* file. The per-(IP, User-Agent) persistent collection of 901 is not initialised: only 910/912 read it.
// - Audit log: only transactions a rule matched; parts A, H, Z (no request line, no headers, no body), so a
//   bearer token, an OTP code or Meta's verify token never reaches it. Rule targets exclude the Authorization
//   header and the OTP code everywhere, so neither can appear as "matched data" in the error log either.
// - Limits: nginx enforces each route's body size (client_max_body_size); ModSecurity's own limits are the
//   largest route's, so a 100,000-recipient broadcast is parsed and inspected instead of refused.

/** CRS files loaded, in this order (REQUEST-949 last). */
export const CRS_RULE_FILES = [
  "REQUEST-901-INITIALIZATION.conf",
  "REQUEST-911-METHOD-ENFORCEMENT.conf",
  "REQUEST-913-SCANNER-DETECTION.conf",
  "REQUEST-920-PROTOCOL-ENFORCEMENT.conf",
  "REQUEST-921-PROTOCOL-ATTACK.conf",
  "REQUEST-930-APPLICATION-ATTACK-LFI.conf",
  "REQUEST-931-APPLICATION-ATTACK-RFI.conf",
  "REQUEST-932-APPLICATION-ATTACK-RCE.conf",
  "REQUEST-934-APPLICATION-ATTACK-NODEJS.conf",
  "REQUEST-941-APPLICATION-ATTACK-XSS.conf",
  "REQUEST-942-APPLICATION-ATTACK-SQLI.conf",
  "REQUEST-943-APPLICATION-ATTACK-SESSION-FIXATION.conf",
  "REQUEST-949-BLOCKING-EVALUATION.conf",
] as const;

/** Methods the gateway's API uses; CRS 911100 refuses the rest. */
export const ALLOWED_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] as const;

/**
 * ModSecurity's request body limits, the largest of any route. nginx refuses a larger body per route first.
 * A broadcast of 100,000 recipients with per-recipient parameters is the largest request, both in bytes and in
 * the number of JSON values (each value is one ARGS entry).
 */
export const MODSECURITY_BODY_LIMIT_BYTES = 16 * 1024 * 1024;
export const MODSECURITY_ARGUMENTS_LIMIT = 500_000;

/** The audit log file name, inside layout.logDir. */
export const AUDIT_LOG_FILE = "modsec_audit.log";

export interface ModsecurityFiles {
  /** File name (relative to layout.confDir) → contents. */
  readonly files: Record<string, string>;
  /** Absolute path of the rules file for `modsecurity_rules_file`. */
  readonly rulesFile: string;
}

export function renderModsecurity(waf: Waf, layout: EdgeLayout): ModsecurityFiles {
  const rulesFile = posix.join(layout.modsecurityDir, "wagate.conf");
  const relative = posix.relative(layout.confDir, rulesFile);
  if (relative.startsWith("..")) throw new Error("layout.modsecurityDir must lie inside layout.confDir");
  const crs = CRS_RULE_FILES.map((f) => `Include ${posix.join(layout.crsDir, "rules", f)}`).join("\n");
  const tmp = posix.join(layout.tempDir, "modsecurity");
  const contents = `# Rendered by wagate (infra/render/modsecurity.ts). Do not edit on the host.
# ModSecurity v3 engine settings, CRS setup, the CRS files that apply to a Node JSON API, wagate's exclusions.

# --- Engine -------------------------------------------------------------------------------------------------
SecRuleEngine On
SecRequestBodyAccess On
SecResponseBodyAccess Off
SecRequestBodyLimit ${MODSECURITY_BODY_LIMIT_BYTES}
SecRequestBodyNoFilesLimit ${MODSECURITY_BODY_LIMIT_BYTES}
SecRequestBodyLimitAction Reject
SecRequestBodyJsonDepthLimit 64
SecArgumentsLimit ${MODSECURITY_ARGUMENTS_LIMIT}
SecPcreMatchLimit 100000
SecPcreMatchLimitRecursion 100000
SecTmpDir ${tmp}
SecDataDir ${tmp}
SecUnicodeMapFile /etc/nginx/unicode.mapping 20127
SecArgumentSeparator &
SecCookieFormat 0
SecStatusEngine Off
SecDebugLogLevel 0

# Audit: only transactions a rule matched (the gateway's own 4xx are not WAF events); parts A (who, when, the
# request id), H (rule ids and messages), Z. Never B/I/C: those carry the Authorization header, OTP codes and
# Meta's hub.verify_token. One JSON object per line.
SecAuditEngine RelevantOnly
SecAuditLogRelevantStatus "^$"
SecAuditLogParts AHZ
SecAuditLogType Serial
SecAuditLogFormat JSON
SecAuditLog ${posix.join(layout.logDir, AUDIT_LOG_FILE)}

# JSON bodies go through the JSON processor, so each value is inspected as one ARGS entry.
SecRule REQUEST_HEADERS:Content-Type "@rx ^application/(?:[a-z0-9.+-]+\\+)?json" \\
    "id:10000,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
# A body the processor could not parse is refused: what the WAF could not read, it cannot vouch for.
SecRule REQBODY_ERROR "!@eq 0" \\
    "id:10001,phase:2,t:none,log,deny,status:400,msg:'Failed to parse request body',logdata:'%{reqbody_error_msg}',severity:2"
SecRule &ARGS "@ge ${MODSECURITY_ARGUMENTS_LIMIT}" \\
    "id:10002,phase:2,t:none,log,deny,status:413,msg:'Too many arguments',severity:2"
SecRule TX:/^MSC_/ "!@streq 0" \\
    "id:10003,phase:2,t:none,log,deny,status:500,msg:'ModSecurity internal error flagged: %{MATCHED_VAR_NAME}'"

# --- CRS setup (what crs-setup.conf would say) ----------------------------------------------------------------
SecDefaultAction "phase:1,log,auditlog,pass"
SecDefaultAction "phase:2,log,auditlog,pass"
SecAction "id:900000,phase:1,nolog,pass,t:none,setvar:tx.paranoia_level=${waf.paranoiaLevel}"
SecAction "id:900110,phase:1,nolog,pass,t:none,setvar:tx.inbound_anomaly_score_threshold=${waf.inboundAnomalyThreshold},setvar:tx.outbound_anomaly_score_threshold=${waf.outboundAnomalyThreshold}"
SecAction "id:900200,phase:1,nolog,pass,t:none,setvar:'tx.allowed_methods=${ALLOWED_METHODS.join(" ")}'"
SecAction "id:900220,phase:1,nolog,pass,t:none,setvar:'tx.allowed_request_content_type=|application/json|'"
SecAction "id:900230,phase:1,nolog,pass,t:none,setvar:'tx.allowed_http_versions=HTTP/1.1 HTTP/2 HTTP/2.0'"
SecAction "id:900990,phase:1,nolog,pass,t:none,setvar:tx.crs_setup_version=334"

# --- Exclusions that must run before the CRS rules ------------------------------------------------------------
# Meta's webhook (POST /webhooks/whatsapp). Its body is what WhatsApp users typed: message text, captions,
# profile names, button titles. Anything at all, including text that looks like SQL or a <script> tag, is a
# legitimate message the gateway must receive, and Meta retries then drops a delivery that keeps failing. The
# gateway accepts the body only if X-Hub-Signature-256 is the HMAC-SHA256 of the raw body with the app secret,
# so the sender is Meta, not the attacker. The exclusion is minimal: only on this path, only for POST, only when
# a well-formed signature header is present; only the JSON *values* (ARGS) leave the injection families (SQLi,
# XSS, RCE, LFI, RFI, Node.js). Key names (ARGS_NAMES), the URI, the query string, the headers, the method, the
# content type and protocol enforcement stay inspected.
SecRule REQUEST_FILENAME "@streq /webhooks/whatsapp" \\
    "id:10100,phase:1,pass,nolog,t:none,chain"
    SecRule REQUEST_METHOD "@streq POST" "chain"
    SecRule REQUEST_HEADERS:X-Hub-Signature-256 "@rx ^sha256=[0-9a-f]{64}$" \\
        "ctl:ruleRemoveTargetByTag=attack-sqli;ARGS,\\
        ctl:ruleRemoveTargetByTag=attack-xss;ARGS,\\
        ctl:ruleRemoveTargetByTag=attack-rce;ARGS,\\
        ctl:ruleRemoveTargetByTag=attack-lfi;ARGS,\\
        ctl:ruleRemoveTargetByTag=attack-rfi;ARGS,\\
        ctl:ruleRemoveTargetByTag=attack-injection-nodejs;ARGS"

# The OTP code is digits the gateway validates; keeping it out of every rule keeps it out of every log line.
SecRule REQUEST_FILENAME "@streq /v1/otp/verify" \\
    "id:10110,phase:1,pass,nolog,t:none,ctl:ruleRemoveTargetByTag=OWASP_CRS;ARGS:json.code"

# Meta's subscription handshake (GET /webhooks/whatsapp) carries the operator's verify token in the query string;
# no rule inspects it, so no log line quotes it. The gateway compares it in constant time.
SecRule REQUEST_FILENAME "@streq /webhooks/whatsapp" \\
    "id:10111,phase:1,pass,nolog,t:none,ctl:ruleRemoveTargetByTag=OWASP_CRS;ARGS:hub.verify_token"

# --- OWASP CRS ------------------------------------------------------------------------------------------------
${crs}

# --- Exclusions after the CRS rules ---------------------------------------------------------------------------
# The bearer token is verified cryptographically by the gateway; no rule inspects it, so no log can quote it.
SecRuleUpdateTargetByTag "OWASP_CRS" "!REQUEST_HEADERS:Authorization"
# Only 910 (IP reputation) and 912 (DoS) read the persistent per-client collection; neither is loaded, and
# initialising it costs a SHA-1 of the User-Agent and a locked in-memory store on every request.
SecRuleRemoveById 901318 901321
`;
  return { files: { [relative]: contents }, rulesFile };
}
