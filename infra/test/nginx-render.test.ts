import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { trixieRoot } from "../../scripts/lib/trixie-root.js";
import { localLayout, vmLayout } from "../render/layout.js";
import {
  CRS_NEVER_SET_GATES,
  CRS_PARANOIA_SKIP_RULES,
  CRS_PL1_RULES,
  CRS_RULE_FILES,
  CRS_RULES_BY_PARANOIA_LEVEL,
  CRS_RULES_NEVER_FIRING,
  CRS_SETUP_RULES_REMOVED,
  crsRemovalList,
  HEADER_WIDE_RULES,
  NAME_EXCLUSION_RULES,
  RESTRICTED_HEADERS,
  renderModsecurity,
  rulesAboveParanoiaLevel,
  XSS_ARGS_RULES,
  XSS_EXCLUDED_TARGETS,
} from "../render/modsecurity.js";
import { renderNginx } from "../render/nginx.js";
import { rateLimitSchema, wafSchema } from "../render/settings.js";

// The renderers as pure functions: what the VM gets, what config changes, what is refused.

const vm = () =>
  renderNginx({
    domain: "api.example.com",
    rateLimit: rateLimitSchema.parse({}),
    waf: wafSchema.parse({}),
    layout: vmLayout(),
  });

describe("renderNginx", () => {
  it("renders a whole nginx.conf for the VM: Debian paths, 80/443 on every address, www-data, no includes", () => {
    const conf = vm()["nginx.conf"] ?? "";
    expect(conf).toMatch(/^load_module \/usr\/lib\/nginx\/modules\/ngx_http_modsecurity_module\.so;$/m);
    expect(conf).toMatch(/^user www-data;$/m);
    expect(conf).toContain("listen 443 ssl default_server;");
    expect(conf).toMatch(/^\s+http2 on;$/m);
    expect(conf).toContain("listen [::]:443 ssl default_server;");
    expect(conf).toContain("listen 80 default_server;");
    expect(conf).toContain("ssl_certificate /etc/letsencrypt/live/wagate/fullchain.pem;");
    expect(conf).toContain("ssl_protocols TLSv1.2 TLSv1.3;");
    expect(conf).not.toMatch(/ssl_stapling|TLSv1\.1|TLSv1 /);
    expect(conf).toContain("server_tokens off;");
    expect(conf).toContain("return 301 https://api.example.com$request_uri;");
    expect(conf).not.toMatch(/^\s*include\b/m);
    expect(conf).toContain("server 127.0.0.1:3000 max_fails=0;");
    // Rules loaded once, at http level; switched on only where requests are proxied.
    expect(conf.match(/modsecurity_rules_file/g)?.length).toBe(1);
    expect(conf).toContain("modsecurity_rules_file /etc/nginx/modsecurity.d/wagate.conf;");
    expect(Object.keys(vm()).sort()).toEqual([
      "ffdhe2048.pem",
      "modsecurity.d/wagate.conf",
      "nginx.conf",
      "njs/wagate.js",
    ]);
  });

  it("takes every limit from the stack config", () => {
    const conf =
      renderNginx({
        domain: "api.example.com",
        rateLimit: rateLimitSchema.parse({
          perIp: { rate: 7, burst: 13 },
          otpPerMinute: { rate: 3, burst: 2 },
          perToken: { rate: 40, burst: 80 },
          webhookPerIp: { rate: 90, burst: 150 },
          connectionsPerIp: 33,
        }),
        waf: wafSchema.parse({}),
        layout: vmLayout(),
      })["nginx.conf"] ?? "";
    expect(conf).toContain("zone=wagate_ip:10m rate=7r/s;");
    expect(conf).toContain("zone=wagate_otp:10m rate=3r/m;");
    expect(conf).toContain("zone=wagate_token:10m rate=40r/s;");
    expect(conf).toContain("zone=wagate_webhook:1m rate=90r/s;");
    expect(conf).toContain("limit_req zone=wagate_ip burst=13 nodelay;");
    expect(conf).toContain("limit_req zone=wagate_otp burst=2 nodelay;");
    expect(conf).toContain("limit_req zone=wagate_token burst=80 nodelay;");
    expect(conf).toContain("limit_req zone=wagate_webhook burst=150 nodelay;");
    expect(conf).toContain("limit_conn wagate_conn 33;");
    expect(conf).toContain("limit_req_status 429;");
  });

  it("never keys a zone on the bearer token itself", () => {
    const conf = vm()["nginx.conf"] ?? "";
    expect(conf).not.toMatch(/limit_req_zone \$http_authorization/);
    expect(conf).toMatch(/limit_req_zone \$wagate_token_key zone=wagate_token/);
  });

  it("without the WAF, loads no module and no rules", () => {
    const files = renderNginx({
      domain: "api.example.com",
      rateLimit: rateLimitSchema.parse({}),
      waf: wafSchema.parse({ enabled: false }),
      layout: vmLayout(),
    });
    expect(files["nginx.conf"]).not.toContain("modsecurity");
    expect(files["nginx.conf"]).not.toContain("wafError");
    expect(Object.keys(files).sort()).toEqual(["ffdhe2048.pem", "nginx.conf", "njs/wagate.js"]);
  });

  it("refuses a domain that is not a DNS name (nothing reaches the config unchecked)", () => {
    for (const domain of [
      "api.example.com; include /etc/passwd",
      "API.EXAMPLE.COM",
      "localhost",
      "-x.example.com",
      "",
    ]) {
      expect(() =>
        renderNginx({
          domain,
          rateLimit: rateLimitSchema.parse({}),
          waf: wafSchema.parse({}),
          layout: vmLayout(),
        }),
      ).toThrow();
    }
  });

  it("a local layout binds 127.0.0.1 on its own ports, without a user directive", () => {
    const layout = localLayout("/tmp/wagate-local", { http: 8080, https: 8443, upstream: 3100 });
    const conf =
      renderNginx({
        domain: "gateway.test",
        rateLimit: rateLimitSchema.parse({}),
        waf: wafSchema.parse({}),
        layout,
      })["nginx.conf"] ?? "";
    expect(conf).toContain("listen 127.0.0.1:8443 ssl default_server;");
    expect(conf).toContain("return 301 https://gateway.test:8443$request_uri;");
    expect(conf).not.toMatch(/^user /m);
    expect(conf).toContain("pid /tmp/wagate-local/nginx.pid;");
  });

  it("switches HTTP/2 on the way the target nginx understands: `http2 on` from 1.25.1, the listen flag before", () => {
    const layout = localLayout("/tmp/wagate-local", { http: 8080, https: 8443, upstream: 3100 });
    const conf = (nginxVersion?: string) =>
      renderNginx({
        domain: "gateway.test",
        rateLimit: rateLimitSchema.parse({}),
        waf: wafSchema.parse({}),
        layout,
        nginxVersion,
      })["nginx.conf"] ?? "";
    for (const version of [undefined, "1.26.3", "1.25.1", "1.27.0"]) {
      expect(conf(version), version).toContain("listen 127.0.0.1:8443 ssl default_server;");
      expect(conf(version), version).toMatch(/^\s+http2 on;$/m);
    }
    for (const version of ["1.22.1", "1.25.0"]) {
      expect(conf(version), version).toContain("listen 127.0.0.1:8443 ssl http2 default_server;");
      expect(conf(version), version).not.toMatch(/http2 on;/);
    }
    expect(() => conf("latest")).toThrow(/nginxVersion/);
  });
});

describe("renderModsecurity", () => {
  it("blocks, with the paranoia level and thresholds from config", () => {
    const { files } = renderModsecurity(
      wafSchema.parse({ paranoiaLevel: 2, inboundAnomalyThreshold: 7, outboundAnomalyThreshold: 6 }),
      vmLayout(),
    );
    const rules = files["modsecurity.d/wagate.conf"] ?? "";
    expect(rules).toMatch(/^SecRuleEngine On$/m);
    expect(rules).toContain("setvar:tx.paranoia_level=2,");
    expect(rules).toContain("setvar:tx.inbound_anomaly_score_threshold=7,");
    // No RESPONSE-* rule is loaded: the outbound threshold has nothing to read it.
    expect(rules).not.toContain("outbound_anomaly_score");
    expect(rules).toContain("setvar:tx.anomaly_score_pl2=0,");
    expect(rules).not.toContain("anomaly_score_pl3");
    expect(rules).toMatch(/^SecAuditLogParts AHZ$/m);
    expect(rules).not.toMatch(/IncludeOptional/);
    for (const f of CRS_RULE_FILES) expect(rules).toContain(`Include /usr/share/modsecurity-crs/rules/${f}`);
    // Level 2 keeps its own rules and removes levels 3 and 4.
    const removed = rules
      .split("\n")
      .filter((l) => l.startsWith("SecRuleRemoveById 9"))
      .join(" ");
    expect(removed).not.toContain("942110");
    expect(removed).toContain("942101");
    expect(removed).toContain("942421");
  });

  it("skips 920450 only when no header of its restricted list is present, the same list it checks", () => {
    const rules = renderModsecurity(wafSchema.parse({}), vmLayout()).files["modsecurity.d/wagate.conf"] ?? "";
    expect(rules).toContain(
      `setvar:'tx.restricted_headers=${RESTRICTED_HEADERS.map((h) => `/${h}/`).join(" ")}'`,
    );
    const guard = rules.split("\n").find((l) => l.startsWith("SecRule &REQUEST_HEADERS:")) ?? "";
    const counted = guard
      .split(" ")[1]
      ?.split("|")
      .map((v) => v.replace("&REQUEST_HEADERS:", ""));
    expect(counted).toEqual([...RESTRICTED_HEADERS]);
    expect(guard).toContain('"@gt 0"');
    // Any of them present: skip the one rule that removes 920450, so it runs as shipped.
    const lines = rules.split("\n");
    const at = lines.indexOf(guard);
    expect(lines[at + 1]).toContain("skip:1");
    expect(lines[at + 2]).toMatch(/^SecAction ".*ctl:ruleRemoveById=920450"$/);
    // Before the CRS files: it must run before 920450 does.
    expect(at).toBeLessThan(lines.findIndex((l) => l.startsWith("Include ")));
  });

  it("keeps the XSS rules off the fixed field names and the two validated fields, for the rules it loads", () => {
    const excluded = (level: number) => {
      const rules =
        renderModsecurity(wafSchema.parse({ paranoiaLevel: level }), vmLayout()).files[
          "modsecurity.d/wagate.conf"
        ] ?? "";
      return rules
        .split("\n")
        .filter((l) => l.startsWith("SecRuleUpdateTargetById 941") && l.includes("ARGS:json.to"))
        .map((l) => {
          expect(l.split(" ")[2]).toBe(`"${XSS_EXCLUDED_TARGETS.map((t) => `!${t}`).join("|")}"`);
          return l.split(" ")[1];
        });
    };
    const level1 = excluded(1);
    expect(level1).toHaveLength(23);
    expect(level1).not.toContain("941150");
    // 941310 already leaves every JSON value and name (its own exclusion).
    expect(level1).not.toContain("941310");
    expect(excluded(2)).toEqual(XSS_ARGS_RULES.filter((id) => id !== "941310"));
    // The other families skip only the constant names.
    const rules1 =
      renderModsecurity(wafSchema.parse({}), vmLayout()).files["modsecurity.d/wagate.conf"] ?? "";
    for (const id of NAME_EXCLUSION_RULES)
      expect(rules1).toContain(
        `SecRuleUpdateTargetById ${id} "!ARGS_NAMES:json.to|!ARGS_NAMES:json.type|!ARGS_NAMES:json.text.body"\n`,
      );
    // Only names and the two schema-validated values: the message text itself stays inspected.
    expect(XSS_EXCLUDED_TARGETS.filter((t) => t.startsWith("ARGS:"))).toEqual([
      "ARGS:json.to",
      "ARGS:json.type",
    ]);
  });

  it("with identity first, renders no exclusion for the API's JSON bodies: /v1/ never reaches ModSecurity", () => {
    const rules = (verified: boolean) =>
      renderModsecurity(wafSchema.parse({}), vmLayout(), { verified }).files["modsecurity.d/wagate.conf"] ??
      "";
    const anonymous = rules(true);
    expect(anonymous).not.toContain("json.to");
    expect(anonymous).not.toContain("@streq /v1/");
    expect(anonymous).not.toMatch(/^SecRuleUpdateTargetById 941310/m);
    expect(anonymous).toContain("id:10000,");
    // Without identity the API's bodies still meet CRS, with their exclusions.
    expect(rules(false)).toContain('"@streq /v1/broadcasts"');
    expect(rules(false)).toMatch(/^SecRuleUpdateTargetById 941100 /m);
    // The handshake's verify-token exclusion (by tag: costly for the rest of the transaction) only on GET.
    const handshake = anonymous.slice(
      anonymous.indexOf("id:10111") - 60,
      anonymous.indexOf("id:10111") + 200,
    );
    expect(handshake).toMatch(/SecRule REQUEST_METHOD "@streq GET"[\s\S]*@streq \/webhooks\/whatsapp/);
  });

  it("keeps both spellings of the Authorization header away from every loaded header-wide rule", () => {
    const rules = (level: number) =>
      renderModsecurity(wafSchema.parse({ paranoiaLevel: level }), vmLayout()).files[
        "modsecurity.d/wagate.conf"
      ] ?? "";
    const excluded = (level: number, spelling: string) =>
      [
        ...rules(level).matchAll(
          new RegExp(`ctl:ruleRemoveTargetById=(\\d+);REQUEST_HEADERS:${spelling}\\b`, "g"),
        ),
      ].map((m) => m[1]);
    for (const spelling of ["Authorization", "authorization"]) {
      expect(excluded(4, spelling)).toEqual([...HEADER_WIDE_RULES]);
      // At level 1 the rules above it are not loaded, so they get no exclusion.
      expect(excluded(1, spelling)).toEqual(["913110", "920270", "921140", "930100", "930110", "932170"]);
    }
    // Only on requests that carry the header, in phase 1 before any CRS rule; never as a configuration-time
    // exclusion, which ModSecurity scans for every rule of every request.
    const text = rules(1);
    expect(text).toMatch(/^SecRule &REQUEST_HEADERS:Authorization "@gt 0" \\\n\s+"id:10150,phase:1,/m);
    expect(text.indexOf("id:10150")).toBeLessThan(text.indexOf("Include "));
    expect(text).not.toMatch(/^SecRuleUpdateTargetById \d+ "!REQUEST_HEADERS:Authorization/m);
  });

  it("removes the rules gated on settings it never makes, and never makes them", () => {
    for (const level of [1, 2, 3, 4]) {
      const rules =
        renderModsecurity(wafSchema.parse({ paranoiaLevel: level }), vmLayout()).files[
          "modsecurity.d/wagate.conf"
        ] ?? "";
      const line = rules.split("\n").find((l) => l.startsWith("SecRuleRemoveById ")) ?? "";
      const removed = new Set(
        line
          .split(" ")
          .slice(1)
          .flatMap((r) => {
            const [a, b = a] = r.split("-").map(Number) as [number, number?];
            return Array.from({ length: (b ?? a) - a + 1 }, (_, i) => String(a + i));
          }),
      );
      for (const id of ["920250", "920360", "920410"]) expect(removed.has(id), id).toBe(true);
      expect(CRS_RULES_NEVER_FIRING).toEqual(["920250", "920360-920410"]);
      for (const gate of CRS_NEVER_SET_GATES)
        expect(rules).not.toMatch(new RegExp(`setvar:'?tx\\.${gate}=`, "i"));
    }
  });

  it("removes, at each paranoia level, exactly the rules above it", () => {
    expect(rulesAboveParanoiaLevel(1)).toEqual([
      ...CRS_PARANOIA_SKIP_RULES,
      ...CRS_RULES_BY_PARANOIA_LEVEL[2],
      "949061",
      ...CRS_RULES_BY_PARANOIA_LEVEL[3],
      "949062",
      ...CRS_RULES_BY_PARANOIA_LEVEL[4],
      "949063",
    ]);
    expect(rulesAboveParanoiaLevel(3)).toEqual([
      ...CRS_PARANOIA_SKIP_RULES,
      ...CRS_RULES_BY_PARANOIA_LEVEL[4],
      "949063",
    ]);
    expect(rulesAboveParanoiaLevel(4)).toEqual([...CRS_PARANOIA_SKIP_RULES]);
  });
});

describe("the pinned CRS rule ids match the VM's modsecurity-crs (Debian 13's 3.3.7, from the trixie root)", () => {
  let crsRules = "";
  const expand = (ranges: readonly string[]) =>
    ranges.flatMap((r) => {
      const [a, b = a] = r.split("-").map(Number) as [number, number?];
      return Array.from({ length: (b ?? a) - a + 1 }, (_, i) => String(a + i));
    });

  it("skip rules and rules per paranoia level", async () => {
    crsRules = join(await trixieRoot(), "usr/share/modsecurity-crs/rules");
    const files = await readdir(crsRules).catch(() => {
      throw new Error(`OWASP CRS is not installed at ${crsRules}: apt-get install modsecurity-crs`);
    });
    const skip = new Set<string>();
    const byLevel: Record<number, Set<string>> = { 2: new Set(), 3: new Set(), 4: new Set() };
    const wide = new Set<string>();
    const xssArgs = new Set<string>();
    const readsArgsNames = new Set<string>();
    for (const file of CRS_RULE_FILES.filter((f) => !/90[19]|949/.test(f.slice(8, 11)))) {
      expect(files).toContain(file);
      const lines = (await readFile(join(crsRules, file), "utf8")).split("\n");
      let level = 1;
      let target = "";
      lines.forEach((line, i) => {
        const plSkip = line.match(/EXECUTING_PARANOIA_LEVEL "@lt (\d)"/);
        if (line.startsWith("SecRule ")) target = line.split(" ")[1] ?? "";
        const id = line.match(/\bid:(\d{6})/)?.[1];
        if (plSkip) {
          level = Number(plSkip[1]);
          const skipId = lines
            .slice(i, i + 4)
            .join(" ")
            .match(/id:(\d{6})/)?.[1];
          if (skipId) skip.add(skipId);
          return;
        }
        if (!id) return;
        if (level > 1) byLevel[level]?.add(id);
        if (/(^|\|)REQUEST_HEADERS(\||$)/.test(target)) wide.add(id);
        if (file.includes("-941-") && /(^|\|)ARGS(\||$)/.test(target)) xssArgs.add(id);
        if (level === 1 && /(^|\|)ARGS_NAMES(\||$)/.test(target)) readsArgsNames.add(id);
        target = "";
      });
    }
    expect(new Set(expand(CRS_PARANOIA_SKIP_RULES))).toEqual(skip);
    for (const level of [2, 3, 4] as const) {
      expect(new Set(expand(CRS_RULES_BY_PARANOIA_LEVEL[level])), `level ${level}`).toEqual(byLevel[level]);
    }
    expect(new Set(HEADER_WIDE_RULES)).toEqual(wide);
    expect(new Set(XSS_ARGS_RULES)).toEqual(xssArgs);
    for (const id of NAME_EXCLUSION_RULES) expect(readsArgsNames.has(id), id).toBe(true);
    // Each never-firing rule starts with its gate, and the range holds no other rule.
    const ids = new Set(
      (await Promise.all(CRS_RULE_FILES.map((f) => readFile(join(crsRules, f), "utf8"))))
        .join("\n")
        .match(/\bid:\d{6}/g)
        ?.map((m) => m.slice(3)),
    );
    const inRange = [...ids].filter((id) => Number(id) >= 920360 && Number(id) <= 920410).sort();
    expect(inRange).toEqual(["920360", "920370", "920380", "920390", "920400", "920410"]);
    expect(CRS_RULES_NEVER_FIRING).toEqual(["920250", "920360-920410"]);
    const never = ["920250", ...inRange];
    const text920 = (
      await readFile(join(crsRules, "REQUEST-920-PROTOCOL-ENFORCEMENT.conf"), "utf8")
    ).replaceAll("\\\n", " ");
    for (const id of never) {
      const first = text920.split("\n").find((l) => l.includes(`id:${id},`)) ?? "";
      const gate = CRS_NEVER_SET_GATES.find((g) => first.toLowerCase().includes(`tx:${g}`));
      expect(gate, `rule ${id}: ${first.slice(0, 80)}`).toBeDefined();
    }
  });
  it("renders the removal list as ranges that remove exactly the intended rules of the installed CRS", async () => {
    const text = (await Promise.all(CRS_RULE_FILES.map((f) => readFile(join(crsRules, f), "utf8")))).join(
      "\n",
    );
    const existing = new Set((text.match(/\bid:\d{6}/g) ?? []).map((m) => Number(m.slice(3))));
    const within = (ranges: readonly string[]) =>
      new Set(
        expand(ranges)
          .map(Number)
          .filter((id) => existing.has(id)),
      );
    for (const level of [1, 2, 3, 4]) {
      const intended = within([
        ...CRS_RULES_NEVER_FIRING,
        ...CRS_SETUP_RULES_REMOVED,
        ...rulesAboveParanoiaLevel(level),
      ]);
      expect(within(crsRemovalList(level)), `level ${level}`).toEqual(intended);
    }
    // The rules kept at level 1 are exactly CRS_PL1_RULES (what the ranges must not span).
    const kept = [...existing].filter((id) => !within(crsRemovalList(1)).has(id)).sort();
    expect(kept.map(String)).toEqual([...CRS_PL1_RULES]);
    // Fewer entries than the ids and ranges they replace.
    expect(crsRemovalList(1).length).toBeLessThan(
      CRS_RULES_NEVER_FIRING.length + CRS_SETUP_RULES_REMOVED.length + rulesAboveParanoiaLevel(1).length,
    );
  });
});
