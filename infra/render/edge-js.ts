import { EDGE_ERRORS } from "./nginx-errors.js";

// The edge's njs module (`libnginx-mod-http-js`: 0.8.9 on Debian 13, 0.7.9 on Debian 12), rendered as one file,
// `njs/wagate.js` under the config dir, imported as `wagate`. Written for both versions: no async in handlers
// that must answer synchronously, no syntax newer than njs 0.7.
//
// - `wafErrorHeaders` / `wafErrorBody` (js_header_filter / js_body_filter of the locations where ModSecurity
//   runs): a ModSecurity denial becomes the gateway's JSON error in place. error_page cannot do it: its internal
//   redirect drops ModSecurity-nginx 1.0.3's transaction, and with it the audit log entry that names the rules
//   (fixed only in the connector's 1.0.4). The client sees no rule id; the request id finds it in the audit log.
// - `headersOk` (js_set $wagate_headers_ok): the header values of a verified request, which meets no WAF.
// - `identity` (js_set $wagate_identity, evaluated lazily: only when a /v1/ request passed the per-IP limits): the
//   bearer token verified as the gateway verifies it — HS256 only (alg pinned), the HMAC-SHA256 of the UTF-8 key
//   compared in constant time, exp (and nbf when present) within the clock tolerance, iss and aud exact, sub and
//   jti present. Its value is the token's jti, the key of the per-token limit; "" for anything else (JSON 401).
//   The key comes from a JSON file the master reads at configuration load (js_preload_object), so it can be
//   readable by root only; workers hold it in memory. During an API_SECRET rotation the file also holds the
//   previous secret, and a token signed with either passes the edge: nginx reloads with the new file before the
//   gateway restarts with the new secret, and neither key may be refused at the edge while the gateway still
//   runs with it. The gateway stays the authority: it verifies with API_SECRET only.

/** File name of the module, relative to layout.confDir. */
export const EDGE_JS_FILE = "njs/wagate.js";
/** Where callers put the key file, relative to the config dir; scripts/lib/nginx.ts writes it 0600. */
export const IDENTITY_KEY_FILE = "identity-key.json";
/** The global the verification key is preloaded as (js_preload_object). */
export const IDENTITY_KEY_OBJECT = "wagate_identity_key";

export interface IdentityKey {
  /** The gateway's API_SECRET (HS256 key: its UTF-8 bytes). */
  readonly secret: string;
  /** API_SECRET_PREVIOUS, only while a rotation is under way. */
  readonly previousSecret?: string;
  readonly issuer: string;
  readonly audience: string;
  /** The gateway's JWT_CLOCK_TOLERANCE_SECONDS. */
  readonly toleranceSeconds: number;
}

/** The key file nginx preloads (a secret: write it 0600, root-owned; never into a bundle or a log). */
export function renderIdentityKey(key: IdentityKey): string {
  return `${JSON.stringify(key)}\n`;
}

export function renderEdgeJs(): string {
  const forbidden = EDGE_ERRORS[403];
  if (!forbidden) throw new Error("EDGE_ERRORS has no 403");
  return `// Rendered by wagate (infra/render/edge-js.ts). Do not edit on the host.

// A 403 that no upstream answered comes from ModSecurity (the only source of 403 in these locations).
function isWafDenial(r) {
    return r.status === 403 && !r.variables.upstream_status;
}

function wafErrorHeaders(r) {
    if (!isWafDenial(r)) return;
    r.headersOut['Content-Type'] = 'application/json';
    delete r.headersOut['Content-Length'];
}

function wafErrorBody(r, data, flags) {
    if (!isWafDenial(r)) {
        r.sendBuffer(data, flags);
        return;
    }
    // nginx's HTML page is dropped; the JSON goes out with the last buffer.
    if (flags.last) {
        r.sendBuffer(JSON.stringify({ error: { code: ${JSON.stringify(forbidden.code)}, message: ${JSON.stringify(forbidden.message)}, request_id: r.variables.request_id } }) + '\\n', flags);
    }
}

var crypto = require('crypto');

function decodePart(part) {
    return JSON.parse(Buffer.from(part, 'base64url').toString());
}

// Constant time over the 32 bytes of the signature. Bytes, not characters: charCodeAt in a loop costs njs about
// as much as the rest of the check together (callgrind: ~105k instructions a request against ~20k).
function sameBytes(a, b) {
    if (a.length !== 32 || b.length !== 32) return false;
    var diff = 0;
    for (var i = 0; i < 32; i++) diff |= a[i] ^ b[i];
    return diff === 0;
}

function signedWith(secret, m, signature) {
    return sameBytes(crypto.createHmac('sha256', secret).update(m[1] + '.' + m[2]).digest(), signature);
}

function identity(r) {
    var header = r.headersIn['Authorization'];
    if (!header || header.length > 4096) return '';
    // The signature in canonical base64url only (its 43rd character carries 4 bits, the 2 unused ones zero), so
    // one token has one spelling.
    var m = /^Bearer ([A-Za-z0-9_-]+)\\.([A-Za-z0-9_-]+)\\.([A-Za-z0-9_-]{42}[AEIMQUYcgkosw048])$/.exec(header);
    if (!m) return '';
    var key = wagate_identity_key;
    var signature = Buffer.from(m[3], 'base64url');
    // During a secret rotation the previous secret's tokens pass the edge too: nginx reloads before the gateway
    // restarts, and the gateway (which verifies with the current secret alone) still judges every token.
    if (!signedWith(key.secret, m, signature) && !(key.previousSecret && signedWith(key.previousSecret, m, signature)))
        return '';
    try {
        var head = decodePart(m[1]);
        var claims = decodePart(m[2]);
        if (head.alg !== 'HS256') return '';
        var now = Date.now() / 1000;
        if (typeof claims.exp !== 'number' || claims.exp + key.toleranceSeconds <= now) return '';
        if (claims.nbf !== undefined && (typeof claims.nbf !== 'number' || claims.nbf - key.toleranceSeconds > now)) return '';
        if (claims.iss !== key.issuer) return '';
        var aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
        if (aud.indexOf(key.audience) < 0) return '';
        if (typeof claims.sub !== 'string' || !claims.sub) return '';
        if (typeof claims.jti !== 'string' || !/^[A-Za-z0-9_.:-]{1,128}$/.test(claims.jti)) return '';
        return claims.jti;
    } catch (e) {
        return '';
    }
}

// A verified request's header values (js_set $wagate_headers_ok, read only after the token check passed): none may
// start with a bash function definition, the shape shellshock smuggles through headers. Control characters need no
// check here: nginx refuses NUL, CR and LF, and the gateway's HTTP parser (llhttp, strict) any other but tab. The
// indexOf first: a regex per header value costs njs several times more (callgrind).
function headersOk(r) {
    var raw = r.rawHeadersIn;
    for (var i = 0; i < raw.length; i++) {
        var value = raw[i][1];
        if (value.indexOf('(') >= 0 && /^\\s*\\(\\s*\\)\\s*\\{/.test(value)) return '0';
    }
    return '1';
}

export default { wafErrorHeaders, wafErrorBody, identity, headersOk };
`;
}
