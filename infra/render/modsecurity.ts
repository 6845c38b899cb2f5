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
// - Audit log: only transactions a rule matched; parts A, H, Z (A carries the method and URI, no headers, no
//   body), so a bearer token or an OTP code never reaches it. No rule reads the Authorization header, the OTP
//   code or Meta's verify token, so none can appear as "matched data" in the audit or error log either.
// - Limits: nginx enforces each route's body size (client_max_body_size); ModSecurity caps the number of JSON
//   values it inspects. Two bodies are deliberately not inspected: signed Meta webhooks and broadcasts (rules
//   10100/10120 below say why).
// - Speed: CRS's setup is one action, the paranoia level is fixed at render time (rules above it, the per-level
//   skip rules and the rules gated on settings wagate never makes are removed: removal by id costs less than
//   CRS's skipAfter chains, measured), 920450 runs only when a restricted header is present, the XSS family and
//   the other rules with long transformation chains do not read the constant JSON field names (nor, for XSS, the
//   two schema-validated fields), and no exclusion is by tag or regex
//   (ModSecurity 3.0.9 re-evaluates every rule's tags on every request for those, and applies a regex exclusion to
//   every collection).
// - What it costs (npm run profile:edge: callgrind, nginx user-space instructions per small JSON POST, bench:edge's
//   request): nginx alone ~70k; ModSecurity switched on with no rule ~455k (transaction set-up and tear-down,
//   every request and response header copied into its collections); wagate's own rules ~660k; the whole WAF at
//   PL1 ~4.3M (5.2M before the changes above). The rest is per (rule, value) pair inside libmodsecurity 3.0.9:
//   ~120 rules evaluated per request, each copying its variables and running its transformation chain from
//   scratch (t:lowercase alone ~5 %, through std::locale), allocation ~35 %; the regexes run JIT-compiled
//   (libpcre2 JIT) and are ~5 %, libinjection <1 %, the JSON parser <1 %, audit and debug logging nothing on a
//   request no rule matched. What is left cannot be configured away without removing rules the CRS regression
//   suite exercises.

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
 * ModSecurity's request body limits. nginx refuses a body larger than its route allows first (BODY_LIMITS in
 * nginx.ts); ModSecurity's byte limit is the largest route's. The value limit bounds the WAF's CPU per request:
 * CRS costs roughly 50-100 µs per JSON value here, so 1,000 values are tens of milliseconds while 100,000 would
 * hold a worker for about half a minute. No request of the API needs more, except the two routes whose bodies
 * are deliberately not inspected (see the rules file).
 */
export const MODSECURITY_BODY_LIMIT_BYTES = 16 * 1024 * 1024;
export const MODSECURITY_ARGUMENTS_LIMIT = 1_000;

// Content types, charsets and HTTP versions stay CRS's defaults: narrowing them to JSON and UTF-8 here would
// fail 8 of CRS's own regression tests, and the gateway answers 415 to anything but JSON anyway.
const ALLOWED_CONTENT_TYPES =
  "|application/x-www-form-urlencoded| |multipart/form-data| |multipart/related| |text/xml| |application/xml| " +
  "|application/soap+xml| |application/json| |application/cloudevents+json| |application/cloudevents-batch+json|";

/** CRS's default restricted request headers (920450), lower case: nginx passes only names of letters, digits and hyphens. */
export const RESTRICTED_HEADERS = [
  "accept-charset",
  "content-encoding",
  "proxy",
  "lock-token",
  "content-range",
  "if",
] as const;

const RESTRICTED_EXTENSIONS =
  ".asa/ .asax/ .ascx/ .axd/ .backup/ .bak/ .bat/ .cdx/ .cer/ .cfg/ .cmd/ .com/ .config/ .conf/ .cs/ .csproj/ " +
  ".csr/ .dat/ .db/ .dbf/ .dll/ .dos/ .htr/ .htw/ .ida/ .idc/ .idq/ .inc/ .ini/ .key/ .licx/ .lnk/ .log/ .mdb/ " +
  ".old/ .pass/ .pdb/ .pol/ .printer/ .pwd/ .rdb/ .resources/ .resx/ .sql/ .swp/ .sys/ .vb/ .vbs/ .vbproj/ " +
  ".vsdisco/ .webinfo/ .xsd/ .xsx/";

/**
 * CRS 3.3.4 (Debian 12's modsecurity-crs): the `TX:EXECUTING_PARANOIA_LEVEL "@lt N"` skip rules of the loaded
 * files (xxx011-xxx018), and the rules of each paranoia level above 1, as ModSecurity id ranges.
 */
export const CRS_PARANOIA_SKIP_RULES = [
  "911011-911018",
  "913011-913018",
  "920011-920018",
  "921011-921018",
  "930011-930018",
  "931011-931018",
  "932011-932018",
  "934011-934018",
  "941011-941018",
  "942011-942018",
  "943011-943018",
] as const;
export const CRS_RULES_BY_PARANOIA_LEVEL: Readonly<Record<2 | 3 | 4, readonly string[]>> = {
  2: [
    "913101-913102",
    "920121",
    "920200-920201",
    "920230",
    "920271",
    "920300",
    "920320",
    "920341",
    "921151",
    "921422",
    "931130",
    "932200",
    "941101",
    "941150",
    "941320",
    "941330",
    "941340",
    "941380",
    "942110",
    "942120",
    "942130",
    "942150",
    "942180",
    "942200",
    "942210",
    "942260",
    "942300",
    "942310",
    "942330",
    "942340",
    "942361",
    "942370",
    "942380",
    "942390",
    "942400",
    "942410",
    "942430",
    "942440",
    "942450",
    "942470",
    "942480",
    "942510",
  ],
  3: [
    "920272",
    "920490",
    "920510",
    "921170",
    "921180",
    "921230",
    "932106",
    "932190",
    "942101",
    "942251",
    "942420",
    "942431",
    "942460",
    "942490",
    "942511",
  ],
  4: ["920202", "920273-920275", "920460", "942421", "942432"],
};

/** REQUEST-949's rules that add one paranoia level's score to the total (949060, level 1, always stays). */
export const CRS_SCORE_SUM_BY_PARANOIA_LEVEL: Readonly<Record<2 | 3 | 4, string>> = {
  2: "949061",
  3: "949062",
  4: "949063",
};

/** Rule ids (and ranges) to remove at a paranoia level: every skip rule and every rule above the level. */
export function rulesAboveParanoiaLevel(level: number): string[] {
  const above = ([2, 3, 4] as const)
    .filter((pl) => pl > level)
    .flatMap((pl) => [...CRS_RULES_BY_PARANOIA_LEVEL[pl], CRS_SCORE_SUM_BY_PARANOIA_LEVEL[pl]]);
  return [...CRS_PARANOIA_SKIP_RULES, ...above];
}

/** CRS 3.3.4 rules (loaded files, any paranoia level) whose targets include the whole REQUEST_HEADERS collection. */
export const HEADER_WIDE_RULES = [
  "913110",
  "920270",
  "920271",
  "920272",
  "920274",
  "920460",
  "921140",
  "930100",
  "930110",
  "932170",
] as const;

/** The spellings of the Authorization header the header-wide rules skip (3.0.9 compares exclusions case-sensitively). */
export const AUTHORIZATION_SPELLINGS = ["Authorization", "authorization"] as const;

/**
 * CRS 3.3.4 rules gated on a TX setting wagate never makes (the UTF-8 validation switch, the argument and upload
 * limits): they cannot fire. A unit test checks the range holds only those rules and that nothing sets the gates.
 */
export const CRS_RULES_NEVER_FIRING = ["920250", "920360-920410"] as const;
/** The TX variables that gate CRS_RULES_NEVER_FIRING. */
export const CRS_NEVER_SET_GATES = [
  "crs_validate_utf8_encoding",
  "max_num_args",
  "arg_name_length",
  "arg_length",
  "total_arg_length",
  "max_file_size",
  "combined_file_sizes",
] as const;

/** CRS 3.3.4's XSS rules (941, any paranoia level) whose targets include ARGS (a unit test checks them). */
export const XSS_ARGS_RULES = [
  "941100",
  "941110",
  "941120",
  "941130",
  "941140",
  "941150",
  "941160",
  "941170",
  "941180",
  "941190",
  "941200",
  "941210",
  "941220",
  "941230",
  "941240",
  "941250",
  "941260",
  "941270",
  "941280",
  "941290",
  "941300",
  "941310",
  "941320",
  "941330",
  "941340",
  "941350",
  "941360",
  "941370",
  "941380",
] as const;

/**
 * What the XSS rules do not read (see the rules file): the names of the fields every message and OTP request
 * carries (an ARGS_NAMES value is the name itself, so nothing is lost), and the values of the two top-level
 * fields the gateway accepts only as an E.164 number or a fixed literal.
 */
export const XSS_EXCLUDED_TARGETS = [
  "ARGS:json.to",
  "ARGS:json.type",
  "ARGS_NAMES:json.to",
  "ARGS_NAMES:json.type",
  "ARGS_NAMES:json.text.body",
] as const;

/**
 * Other CRS 3.3.4 rules (PL1) that read ARGS_NAMES and run two or more transformations per value: they skip the
 * same constant field names (lossless, see XSS_EXCLUDED_TARGETS). Rules with fewer transformations are left as
 * they are: scanning for an exclusion on every rule evaluation would cost more than it saves (measured).
 */
export const NAME_EXCLUSION_RULES = [
  "921110",
  "921120",
  "921130",
  "921150",
  "930120",
  "932120",
  "932130",
  "932140",
  "932160",
  "932171",
  "942100",
  "943110",
  "943120",
] as const;

/**
 * The rules of the loaded CRS files that run at paranoia level 1 with this configuration (the same 109 in CRS 3.3.4
 * and 3.3.7; a unit test checks the installed CRS has no other). The removal list is rendered as ranges that span
 * none of these nor a rule of a level up to the configured one: ModSecurity compares every rule with every entry of
 * the list on every request (RulesExceptions::contains, 4.5 % of the anonymous request), so fewer entries cost less.
 */
export const CRS_PL1_RULES = [
  "901340",
  "911100",
  "913100",
  "913110",
  "913120",
  "920100",
  "920120",
  "920160",
  "920170",
  "920171",
  "920180",
  "920181",
  "920190",
  "920210",
  "920220",
  "920240",
  "920260",
  "920270",
  "920280",
  "920290",
  "920310",
  "920311",
  "920330",
  "920340",
  "920350",
  "920420",
  "920430",
  "920440",
  "920450",
  "920470",
  "920480",
  "920500",
  "920530",
  "920600",
  "920620",
  "921110",
  "921120",
  "921130",
  "921140",
  "921150",
  "921160",
  "921190",
  "921200",
  "921421",
  "930100",
  "930110",
  "930120",
  "930130",
  "931100",
  "931110",
  "931120",
  "932100",
  "932105",
  "932110",
  "932115",
  "932120",
  "932130",
  "932140",
  "932150",
  "932160",
  "932170",
  "932171",
  "932180",
  "934100",
  "941100",
  "941110",
  "941120",
  "941130",
  "941140",
  "941160",
  "941170",
  "941180",
  "941190",
  "941200",
  "941210",
  "941220",
  "941230",
  "941240",
  "941250",
  "941260",
  "941270",
  "941280",
  "941290",
  "941300",
  "941310",
  "941350",
  "941360",
  "941370",
  "942100",
  "942140",
  "942160",
  "942170",
  "942190",
  "942220",
  "942230",
  "942240",
  "942250",
  "942270",
  "942280",
  "942290",
  "942320",
  "942350",
  "942360",
  "942500",
  "943100",
  "943110",
  "943120",
  "949060",
  "949110",
] as const;

/** REQUEST-901's and 949's rules removed whatever the level (the rules file says why). */
export const CRS_SETUP_RULES_REMOVED = [
  "901001",
  "901100-901170",
  "901200",
  "901318",
  "901321",
  "901350",
  "901400-901450",
  "901500",
  "949011-949018",
  "949100",
] as const;

function expandIds(ranges: readonly string[]): number[] {
  return ranges.flatMap((r) => {
    const [from, to = from] = r.split("-").map(Number) as [number, number?];
    return Array.from({ length: (to ?? from) - from + 1 }, (_, i) => from + i);
  });
}

/**
 * `removed` as the fewest ranges that contain no id of `kept`: the same rules removed, in fewer entries. Ids that
 * exist in neither list (gaps in CRS's numbering) may fall inside a range; no rule has them.
 */
export function removalRanges(removed: readonly string[], kept: readonly string[]): string[] {
  const out = new Set(expandIds(removed));
  const keep = new Set(expandIds(kept));
  for (const id of keep) if (out.has(id)) throw new Error(`rule ${id} is both kept and removed`);
  const all = [...new Set([...out, ...keep])].sort((a, b) => a - b);
  const ranges: string[] = [];
  let start: number | undefined;
  let end = 0;
  for (const id of all) {
    if (out.has(id)) {
      start ??= id;
      end = id;
    } else if (start !== undefined) {
      ranges.push(start === end ? `${start}` : `${start}-${end}`);
      start = undefined;
    }
  }
  if (start !== undefined) ranges.push(start === end ? `${start}` : `${start}-${end}`);
  return ranges;
}

/** Everything removed at a paranoia level, as rendered (one SecRuleRemoveById line). */
export function crsRemovalList(level: number): string[] {
  const keptLevels = ([2, 3, 4] as const).filter((pl) => pl <= level);
  return removalRanges(
    [...CRS_RULES_NEVER_FIRING, ...CRS_SETUP_RULES_REMOVED, ...rulesAboveParanoiaLevel(level)],
    [
      ...CRS_PL1_RULES,
      ...keptLevels.flatMap((pl) => [
        ...CRS_RULES_BY_PARANOIA_LEVEL[pl],
        CRS_SCORE_SUM_BY_PARANOIA_LEVEL[pl],
      ]),
      // wagate's own SecAction among CRS's ids.
      "900000",
    ],
  );
}

/** The audit log file name, inside layout.logDir. */
export const AUDIT_LOG_FILE = "modsec_audit.log";

export interface ModsecurityFiles {
  /** File name (relative to layout.confDir) → contents. */
  readonly files: Record<string, string>;
  /** Absolute path of the rules file for `modsecurity_rules_file`. */
  readonly rulesFile: string;
}

/** The exclusions for the API's JSON bodies: rendered only when /v1/ requests reach ModSecurity (no identity). */
function apiBodyExclusions(removed: ReadonlySet<string>): string {
  return `# The XSS rules (941) are the most expensive family: each of its 23 rules at PL1 runs six transformations on every
# value it reads (~1.7M of the ~5.4M instructions per request). They no longer read:
# - ARGS_NAMES json.to, json.type, json.text.body: an ARGS_NAMES value is the argument's name itself, so excluding
#   these exact names excludes exactly these constant strings, whatever the request (nothing is lost);
# - ARGS json.to and json.type: every route that takes a top-level "to" accepts only an E.164 number, and the only
#   one with a top-level "type" only "text" or "template" (strict zod schemas, gateway/src/http/schemas.ts); every
#   other route refuses unknown fields with 400, and the same names in a query string or form reach nothing that
#   reads them. SQLi, RCE, LFI, RFI and Node.js rules still inspect both values.
# Exact names, no regex: ModSecurity 3.0.9 applies a regex exclusion to keys of every collection.
${XSS_ARGS_RULES.filter((id) => id !== "941310" && !removed.has(id))
  .map((id) => `SecRuleUpdateTargetById ${id} "${XSS_EXCLUDED_TARGETS.map((t) => `!${t}`).join("|")}"`)
  .join("\n")}
# The same constant names leave the other rules that read ARGS_NAMES through two or more transformations.
${NAME_EXCLUSION_RULES.filter((id) => !removed.has(id))
  .map(
    (id) =>
      `SecRuleUpdateTargetById ${id} "${XSS_EXCLUDED_TARGETS.filter((t) => t.startsWith("ARGS_NAMES:"))
        .map((t) => `!${t}`)
        .join("|")}"`,
  )
  .join("\n")}
# 941310 looks for the US-ASCII "malformed encoding" XSS of old browsers (bytes 0xBC/0xBE read as < and >). JSON is
# UTF-8 by definition, where those bytes are continuation bytes of ordinary letters: Hindi, Bengali and other
# scripts trip it. JSON body values leave this one rule; the query string and form bodies keep it.
SecRuleUpdateTargetById 941310 "!ARGS:/^json\\./"
`;
}

export function renderModsecurity(
  waf: Waf,
  layout: EdgeLayout,
  options: { verified?: boolean } = {},
): ModsecurityFiles {
  // Identity first (nginx.ts): with `verified`, no request under VERIFIED_PREFIX reaches ModSecurity at all (the
  // edge verified its token; its path, query and body are the gateway's strict schemas' and the edge's positive
  // checks' to judge). What this file then judges is anonymous traffic only (Meta's webhook route, /healthz), with
  // the whole of CRS at the paranoia level; the exclusions written for the API's JSON bodies are not rendered.
  const apiBodies = !options.verified;
  const jsonCondition = `SecRule REQUEST_HEADERS:Content-Type "@rx ^application/(?:[a-z0-9.+-]+\\+)?json" \\
    "id:10000,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"`;
  const rulesFile = posix.join(layout.modsecurityDir, "wagate.conf");
  const relative = posix.relative(layout.confDir, rulesFile);
  if (relative.startsWith("..")) throw new Error("layout.modsecurityDir must lie inside layout.confDir");
  const crs = CRS_RULE_FILES.map((f) => `Include ${posix.join(layout.crsDir, "rules", f)}`).join("\n");
  const tmp = posix.join(layout.tempDir, "modsecurity");
  const aboveLevel = rulesAboveParanoiaLevel(waf.paranoiaLevel);
  const removed = new Set(
    aboveLevel.flatMap((r) => {
      const [from, to = from] = r.split("-").map(Number) as [number, number?];
      return Array.from({ length: (to ?? from) - from + 1 }, (_, i) => String(from + i));
    }),
  );
  // 949060-949063 add each level's score up to the executing level; only those are initialised.
  const anomalyScoresPerLevel = Array.from(
    { length: waf.paranoiaLevel },
    (_, i) => `    setvar:tx.anomaly_score_pl${i + 1}=0,\\\n`,
  ).join("");
  const authorizationExclusions = HEADER_WIDE_RULES.filter((id) => !removed.has(id))
    .flatMap((id) =>
      AUTHORIZATION_SPELLINGS.map((h) => `    ctl:ruleRemoveTargetById=${id};REQUEST_HEADERS:${h}`),
    )
    .join(",\\\n");
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

# Audit: only transactions a rule matched (the gateway's own 4xx are not WAF events: no SecAuditLogRelevantStatus,
# which ModSecurity 3.0.9 would also compile into a fresh regex on every request); parts A (who, when, the
# request id, method and URI), H (rule ids and messages), Z. Never B/I/C: those carry the Authorization header,
# OTP codes and bodies. One JSON object per line.
SecAuditEngine RelevantOnly
SecAuditLogParts AHZ
SecAuditLogType Serial
SecAuditLogFormat JSON
SecAuditLog ${posix.join(layout.logDir, AUDIT_LOG_FILE)}

# JSON bodies go through the JSON processor, so each value is inspected as one ARGS entry.
${jsonCondition}
# A body the processor could not parse, or with more values than SecArgumentsLimit (the parser stops there and
# flags an error), is refused: what the WAF could not read, it cannot vouch for.
SecRule REQBODY_ERROR "!@eq 0" \\
    "id:10001,phase:2,t:none,log,deny,status:400,msg:'Failed to parse request body',logdata:'%{reqbody_error_msg}',severity:2"
# The internal-error flags libmodsecurity sets from 3.0.10 (3.0.9 sets none: its library has no such name), by
# exact name: the usual TX:/^MSC_/ runs a regex over every TX variable name on every request (~50k instructions).
SecRule TX:MSC_PCRE_LIMITS_EXCEEDED|TX:MSC_PCRE_ERROR "!@streq 0" \\
    "id:10003,phase:2,t:none,log,deny,status:500,msg:'ModSecurity internal error flagged: %{MATCHED_VAR_NAME}'"

# --- CRS setup (what crs-setup.conf would say) ----------------------------------------------------------------
# The variables the loaded CRS rules read, set here in one action: 901's two dozen "if unset, set the default"
# rules and its 20-variable initialisation (901200) are removed below. Each setvar costs ~5,000 instructions per
# request (measured with callgrind: scripts/profile-edge.ts), so the ones only unloaded files read are not set
# (outbound threshold and scores, sampling, static extensions, the setup version, per-category scores that the
# rules only ever increment, which ModSecurity treats as 0 when unset; the executing paranoia level and the
# reputation block switch, which only the removed skip rules and 949100 read).
SecDefaultAction "phase:1,log,auditlog,pass"
SecDefaultAction "phase:2,log,auditlog,pass"
SecAction "id:900000,phase:1,nolog,pass,t:none,\\
    setvar:tx.paranoia_level=${waf.paranoiaLevel},\\
    setvar:tx.inbound_anomaly_score_threshold=${waf.inboundAnomalyThreshold},\\
    setvar:tx.critical_anomaly_score=5,\\
    setvar:tx.warning_anomaly_score=3,\\
    setvar:tx.notice_anomaly_score=2,\\
    setvar:tx.reput_block_duration=300,\\
    setvar:tx.anomaly_score=0,\\
${anomalyScoresPerLevel}    setvar:'tx.allowed_methods=${ALLOWED_METHODS.join(" ")}',\\
    setvar:'tx.allowed_request_content_type=${ALLOWED_CONTENT_TYPES}',\\
    setvar:'tx.allowed_request_content_type_charset=utf-8|iso-8859-1|iso-8859-15|windows-1252',\\
    setvar:'tx.allowed_http_versions=HTTP/1.0 HTTP/1.1 HTTP/2 HTTP/2.0',\\
    setvar:'tx.restricted_extensions=${RESTRICTED_EXTENSIONS}',\\
    setvar:'tx.restricted_headers=${RESTRICTED_HEADERS.map((h) => `/${h}/`).join(" ")}'"

# --- Exclusions that must run before the CRS rules ------------------------------------------------------------
# Two routes whose bodies are not inspected by CRS, deliberately; everything else about them still is in phase 1
# (request line, URI, headers, method, protocol), with an early block on that score (rule 10130).
#
# POST /webhooks/whatsapp with a well-formed X-Hub-Signature-256: Meta's webhook. Its body is what WhatsApp users
# typed (message text, captions, profile names, button titles): anything at all, including text that looks like
# SQL or a <script> tag, is a message the gateway must receive, and Meta retries, then drops, a delivery that keeps
# failing. The gateway accepts the body only if the signature is the HMAC-SHA256 of the raw body with the app
# secret, so what passes here unread is refused there unless Meta sent it. Up to 3 MB is up to ~100,000 JSON
# values: inspecting them would also hold an nginx worker for tens of seconds.
SecRule REQUEST_FILENAME "@streq /webhooks/whatsapp" \\
    "id:10100,phase:1,pass,nolog,t:none,chain"
    SecRule REQUEST_METHOD "@streq POST" "chain"
    SecRule &ARGS_GET "@eq 0" "chain"
    SecRule REQUEST_HEADERS:X-Hub-Signature-256 "@rx ^sha256=[0-9a-f]{64}$" \\
        "ctl:requestBodyAccess=Off,setvar:tx.wagate_body_not_inspected=1"

${
  apiBodies
    ? `# POST /v1/broadcasts: up to 100,000 recipients (E.164 numbers, optional template parameters), which the gateway
# validates one by one with its schema and stores with parameterised statements. CRS over 100,000 values costs an
# nginx worker about half a minute of CPU (measured), during which every other client on that worker waits: a
# denial of service by itself. Only without a query string (the route takes none): with one, the whole request is
# inspected, and a large body then meets the ${MODSECURITY_ARGUMENTS_LIMIT}-value limit.
SecRule REQUEST_FILENAME "@streq /v1/broadcasts" \\
    "id:10120,phase:1,pass,nolog,t:none,chain"
    SecRule REQUEST_METHOD "@streq POST" "chain"
    SecRule &ARGS_GET "@eq 0" \\
        "ctl:requestBodyAccess=Off,setvar:tx.wagate_body_not_inspected=1"

# The OTP code is digits the gateway validates; keeping it out of every rule keeps it out of every log line.
SecRule REQUEST_FILENAME "@streq /v1/otp/verify" \\
    "id:10110,phase:1,pass,nolog,t:none,ctl:ruleRemoveTargetByTag=OWASP_CRS;ARGS:json.code"
`
    : "# /v1/ never reaches ModSecurity (identity first): no exclusions for the API's routes.\n"
}
# Meta's subscription handshake (GET /webhooks/whatsapp) carries the operator's verify token in the query string;
# no rule inspects it, so no log line quotes it. The gateway compares it in constant time.
# Only on the handshake's GET: an exclusion by tag makes ModSecurity re-read every rule's tags for the rest of the
# transaction (~1M instructions), which Meta's POSTs (no verify token) must not pay.
SecRule REQUEST_METHOD "@streq GET" \\
    "id:10111,phase:1,pass,nolog,t:none,chain"
    SecRule REQUEST_FILENAME "@streq /webhooks/whatsapp" \\
        "ctl:ruleRemoveTargetByTag=OWASP_CRS;ARGS:hub.verify_token"

# CRS 920450 (restricted headers) matches every request header's name with a capture, stores each in a TX variable
# and then compares every "TX:header_name_*" with the restricted list: ~360,000 instructions on every request, 6 %
# of the whole WAF (callgrind, scripts/profile-edge.ts), to find nothing unless one of those headers was sent. It
# fires exactly when a header of that list is present (its chain: "/<lower-case name>/" within the list, and nginx
# passes only names of letters, digits and hyphens), so when none is present it is removed for this transaction,
# and when one is, it runs as shipped and names itself in the log.
SecRule ${RESTRICTED_HEADERS.map((h) => `&REQUEST_HEADERS:${h}`).join("|")} "@gt 0" \\
    "id:10140,phase:1,pass,nolog,t:none,skip:1"
SecAction "id:10141,phase:1,pass,nolog,t:none,ctl:ruleRemoveById=920450"

# The bearer token is verified cryptographically (by the edge with identity first, and by the gateway); no rule
# inspects it, so no log can quote it. These are the loaded rules that read every request header. Removed for this
# transaction only, and only when the request carries the header: exclusions written at configuration time
# (SecRuleUpdateTargetById) are scanned by ModSecurity for every rule of every request, ~80,000 instructions on
# Meta's webhook POST, which carries no token (scripts/profile-edge.ts). ModSecurity 3.0.9 compares an excluded
# target with the header name as the client spelled it, case included: HTTP/2 clients (and Node's) send
# "authorization", most HTTP/1.1 clients "Authorization"; both are excluded. (A regex would match any case, but
# 3.0.9 applies a regex exclusion to arguments and cookies of that name too.) Counting the header is not case
# sensitive.
SecRule &REQUEST_HEADERS:Authorization "@gt 0" \\
    "id:10150,phase:1,pass,nolog,t:none,\\
${authorizationExclusions}"

# --- OWASP CRS ------------------------------------------------------------------------------------------------
${crs}

# --- After the CRS rules ----------------------------------------------------------------------------------------
# ModSecurity 3.0.9 skips phase 2 entirely when the request body is not read, and CRS 3.3 blocks only in phase 2
# (949110): for the two routes above, block here on what phase 1 found.
SecRule TX:wagate_body_not_inspected "@eq 1" \\
    "id:10130,phase:1,t:none,deny,status:403,log,chain,\\
    msg:'Inbound anomaly score exceeded in phase 1 (request body not inspected on this route)'"
    SecRule TX:ANOMALY_SCORE_PL1 "@ge %{tx.inbound_anomaly_score_threshold}" "t:none"

# --- Exclusions after the CRS rules ---------------------------------------------------------------------------
${apiBodies ? apiBodyExclusions(removed) : ""}# REQUEST-901's defaults (set above instead), its configuration and paranoia sanity checks (the values are
# rendered, not typed by hand) and its sampling rules (sampling is 100 %). 901318/901321 initialise the persistent
# per-client collection that only 910 (IP reputation) and 912 (DoS) read; neither is loaded, and it costs a SHA-1
# of the User-Agent and a locked in-memory store on every request.
# 949's own paranoia-level skip rules sit after its last rule (nothing to skip), and 949100 blocks on the IP
# reputation that 910 would set (not loaded).
# Rules that cannot fire with this configuration: 920250 runs only when tx.crs_validate_utf8_encoding is 1, and
# 920360-920410 only when an argument-count, argument-length or upload-size limit is set in TX. wagate sets none
# of them (nginx's per-route client_max_body_size and SecArgumentsLimit bound requests instead), as CRS's own
# default does; removed instead of evaluated on every request (~45k instructions).
# Paranoia level ${waf.paranoiaLevel} is fixed when rendering: the rules above it and every paranoia-level "skip" rule go,
# instead of being stepped over one evaluation at a time on every request (CRS 3.3.4's ids; a unit test checks
# them against the installed CRS).
# All of them in one list of ranges that span no rule kept at this level (CRS_PL1_RULES says why).
SecRuleRemoveById ${crsRemovalList(waf.paranoiaLevel).join(" ")}
`;
  return { files: { [relative]: contents }, rulesFile };
}
