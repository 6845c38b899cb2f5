import type { FastifyBaseLogger } from "fastify";
import { ApiError } from "../http/errors.js";
import { type RequestedTemplate, templateMismatch } from "./fit.js";
import { fetchTemplates, type GraphTemplate, type TemplateSource } from "./graph-templates.js";
import type { TemplateSourceLookup } from "./sources.js";

// Each number's templates, as Meta last listed them, kept in memory and refreshed in the background once older than
// TEMPLATES_CACHE_SECONDS. A send is checked against that copy without waiting for Meta (POST /v1/messages stays an
// in-memory look-up), with two exceptions that only a refused send pays for:
//
// - Nothing fetched yet (a fresh start, Graph API down, a token without the whatsapp_business_management
//   permission): the send goes out unchecked and Meta judges it (error 132000/132001 on the message). A gateway
//   whose sends depended on the template list being reachable would stop sending when only that list is down.
// - A send the copy would refuse, when the copy is older than REFUSE_ON_COPY_YOUNGER_THAN_MS: the list is re-read
//   first (a template approved minutes ago is not refused on stale data), waiting at most MISS_WAIT_MS; if it cannot
//   be re-read in time the send goes out unchecked, as above.

export const MISS_WAIT_MS = 3_000;
export const REFUSE_ON_COPY_YOUNGER_THAN_MS = 30_000;
/** After a failed fetch, the next background attempt waits this long (a Graph API outage costs one call per 30 s). */
export const RETRY_AFTER_FAILURE_MS = 30_000;

export interface TemplateList {
  fetchedAt: number;
  templates: GraphTemplate[];
}

interface Entry {
  version: string;
  list?: TemplateList;
  byKey?: Map<string, GraphTemplate>;
  languagesByName?: Map<string, string[]>;
  refreshing?: Promise<boolean>;
  failedAt?: number;
  lastError?: string;
}

export interface TemplateCatalogOptions {
  /** Where a number's templates are read (templates/sources.ts); `undefined` is the default number. */
  sources: (numberId: string | undefined) => TemplateSourceLookup;
  ttlMs: number;
  log: FastifyBaseLogger;
  fetch?: (source: TemplateSource, signal: AbortSignal) => Promise<GraphTemplate[]>;
  now?: () => number;
  missWaitMs?: number;
}

export interface TemplateCatalog {
  /**
   * Throws a 422 (`template_not_found`, `template_not_approved`, `template_mismatch`) when the send does not fit
   * the number's approved template; returns nothing when it fits or cannot be checked. A promise only when the
   * list must be re-read first (see above). The message starts with the field the client should look at:
   * `label` (default `template`) for the name, language and status, `componentsLabel` (`<label>.components`) for
   * the parameters.
   */
  check(
    numberId: string | undefined,
    requested: RequestedTemplate,
    fields?: CheckFields,
  ): void | Promise<void>;
  /** The number's list for GET /v1/templates: re-read when older than the TTL; a 422/502 when there is none. */
  list(numberId: string | undefined): Promise<TemplateList>;
  /** Starts background fetches (at start, for the numbers known then). */
  warm(numberIds: ReadonlyArray<string | undefined>): void;
  close(): void;
}

export interface CheckFields {
  label?: string;
  componentsLabel?: string;
}

const keyOf = (name: string, language: string) => `${name}\u0000${language}`;

export function createTemplateCatalog(options: TemplateCatalogOptions): TemplateCatalog {
  const now = options.now ?? Date.now;
  const fetchList = options.fetch ?? fetchTemplates;
  const missWaitMs = options.missWaitMs ?? MISS_WAIT_MS;
  const entries = new Map<string, Entry>();
  const stopping = new AbortController();

  function entryFor(numberId: string | undefined, version: string): Entry {
    const id = numberId ?? "";
    let entry = entries.get(id);
    if (!entry || entry.version !== version) {
      entry = { version };
      entries.set(id, entry);
    }
    return entry;
  }

  /** Resolves true when the list was (re-)read. One fetch per number at a time. */
  function refresh(
    entry: Entry,
    source: Extract<TemplateSourceLookup, { kind: "source" }>,
  ): Promise<boolean> {
    if (entry.refreshing) return entry.refreshing;
    // Started on the next tick, so `entry.refreshing` is set before the fetch can settle.
    const run = Promise.resolve().then(async () => {
      try {
        const templates = await fetchList(source.open(), stopping.signal);
        const byKey = new Map<string, GraphTemplate>();
        const languagesByName = new Map<string, string[]>();
        for (const t of templates) {
          byKey.set(keyOf(t.name, t.language), t);
          languagesByName.set(t.name, [...(languagesByName.get(t.name) ?? []), t.language]);
        }
        Object.assign(entry, { list: { fetchedAt: now(), templates }, byKey, languagesByName });
        delete entry.failedAt;
        delete entry.lastError;
        return true;
      } catch (error) {
        entry.failedAt = now();
        entry.lastError = error instanceof Error ? error.message : "unknown error";
        if (!stopping.signal.aborted)
          options.log.warn(
            { version: entry.version, reason: entry.lastError },
            "templates could not be read",
          );
        return false;
      } finally {
        delete entry.refreshing;
      }
    });
    entry.refreshing = run;
    return run;
  }

  function refreshInBackground(
    entry: Entry,
    source: Extract<TemplateSourceLookup, { kind: "source" }>,
  ): void {
    if (entry.refreshing || stopping.signal.aborted) return;
    if (entry.failedAt !== undefined && now() - entry.failedAt < RETRY_AFTER_FAILURE_MS) return;
    const stale = !entry.list || now() - entry.list.fetchedAt >= options.ttlMs;
    if (stale) void refresh(entry, source);
  }

  function verdict(entry: Entry, requested: RequestedTemplate, fields: CheckFields): ApiError | undefined {
    const label = fields.label ?? "template";
    const approved = entry.byKey?.get(keyOf(requested.name, requested.language));
    if (!approved) {
      const languages = entry.languagesByName?.get(requested.name);
      return languages
        ? new ApiError(
            422,
            "template_not_found",
            `${label}.language: template ${requested.name} has no ${requested.language} translation (it has ${languages.join(", ")})`,
          )
        : new ApiError(
            422,
            "template_not_found",
            `${label}.name: the number's WhatsApp Business Account has no template ${requested.name}`,
          );
    }
    if (approved.status.toUpperCase() !== "APPROVED") {
      return new ApiError(
        422,
        "template_not_approved",
        `${label}: template ${requested.name} (${requested.language}) is ${approved.status}, not APPROVED`,
      );
    }
    const mismatch = templateMismatch(approved, requested);
    return mismatch
      ? new ApiError(
          422,
          "template_mismatch",
          `${fields.componentsLabel ?? `${label}.components`}: ${mismatch} (template ${requested.name}, ${requested.language})`,
        )
      : undefined;
  }

  return {
    check(numberId, requested, fields = {}) {
      const source = options.sources(numberId);
      if (source.kind === "none") return;
      const entry = entryFor(numberId, source.version);
      refreshInBackground(entry, source);
      if (!entry.list) return;
      const refusal = verdict(entry, requested, fields);
      if (!refusal) return;
      if (now() - entry.list.fetchedAt < REFUSE_ON_COPY_YOUNGER_THAN_MS) throw refusal;
      return (async () => {
        let timer: NodeJS.Timeout | undefined;
        const timedOut = new Promise<false>((resolve) => {
          timer = setTimeout(() => resolve(false), missWaitMs);
        });
        const reread = await Promise.race([refresh(entry, source), timedOut]);
        clearTimeout(timer);
        if (!reread) return;
        const second = verdict(entry, requested, fields);
        if (second) throw second;
      })();
    },

    async list(numberId) {
      const source = options.sources(numberId);
      if (source.kind === "none")
        throw new ApiError(422, "templates_unavailable", `number: ${source.reason}`);
      const entry = entryFor(numberId, source.version);
      if (!entry.list || now() - entry.list.fetchedAt >= options.ttlMs) await refresh(entry, source);
      if (entry.list) return entry.list;
      throw new ApiError(
        502,
        "templates_unavailable",
        `the number's templates could not be read: ${entry.lastError ?? "unknown error"}`,
      );
    },

    warm(numberIds) {
      for (const numberId of numberIds) {
        const source = options.sources(numberId);
        if (source.kind === "source") refreshInBackground(entryFor(numberId, source.version), source);
      }
    },

    close() {
      stopping.abort();
    },
  };
}
