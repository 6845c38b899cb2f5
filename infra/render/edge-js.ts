import { EDGE_ERRORS } from "./nginx-errors.js";

// The edge's njs module (`libnginx-mod-http-js`: 0.8.9 on Debian 13, 0.7.9 on Debian 12), rendered as one file,
// `njs/wagate.js` under the config dir, imported as `wagate`. Written for both versions: no async in handlers
// that must answer synchronously, no syntax newer than njs 0.7.
//
// - `wafErrorHeaders` / `wafErrorBody` (js_header_filter / js_body_filter of the locations where ModSecurity
//   runs): a ModSecurity denial becomes the gateway's JSON error in place. error_page cannot do it: its internal
//   redirect drops ModSecurity-nginx 1.0.3's transaction, and with it the audit log entry that names the rules
//   (fixed only in the connector's 1.0.4). The client sees no rule id; the request id finds it in the audit log.

/** File name of the module, relative to layout.confDir. */
export const EDGE_JS_FILE = "njs/wagate.js";

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

export default { wafErrorHeaders, wafErrorBody };
`;
}
