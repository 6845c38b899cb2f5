import type { FastifyPluginAsync } from "fastify";
import { z } from "zod";
import { DEFAULT_NUMBER_ID } from "../numbers/from.js";
import type { NumbersStore } from "../store/numbers.js";
import type { TemplateCatalog } from "../templates/catalog.js";
import type { ScopeGuard } from "./auth.js";
import { ApiError } from "./errors.js";
import { fromField } from "./schemas.js";

// GET /v1/templates (scope `messages:send`: whoever sends templates needs to see which ones exist): the sending
// number's approved templates as Meta lists them, from the gateway's copy (re-read once older than
// TEMPLATES_CACHE_SECONDS). The same copy is what template sends are checked against.

export const templatesQuery = z.strictObject({
  number: fromField
    .optional()
    .meta({ description: "A number id (GET /v1/numbers) or `default`; absent: the default number" }),
});

const templateView = z.object({
  name: z.string(),
  language: z.string(),
  status: z.literal("APPROVED"),
  category: z.string().nullable(),
  components: z.array(z.looseObject({ type: z.string() })).meta({
    description: "As Meta lists them: HEADER, BODY, FOOTER, BUTTONS with their text, format and buttons",
  }),
});

export const templatesAnswer = z.object({
  number: z.string(),
  fetched_at: z.iso.datetime().meta({ description: "When the list was read from Meta's Graph API" }),
  templates: z.array(templateView),
});

export interface TemplatesRoutesOptions {
  catalog: TemplateCatalog;
  numbers: NumbersStore;
  guard: (scope: "messages:send") => ScopeGuard;
}

export const templatesRoutes: FastifyPluginAsync<TemplatesRoutesOptions> = async (
  app,
  { catalog, numbers, guard },
) => {
  app.get(
    "/v1/templates",
    {
      onRequest: guard("messages:send"),
      schema: {
        summary: "The sending number's approved message templates",
        querystring: templatesQuery,
        response: { 200: templatesAnswer },
      },
    },
    async (request) => {
      const { number } = request.query as z.infer<typeof templatesQuery>;
      const numberId = number === undefined || number === DEFAULT_NUMBER_ID ? undefined : number;
      if (numberId !== undefined && !numbers.cachedNumber(numberId))
        throw new ApiError(422, "unknown_number", "number: no such number");
      const list = await catalog.list(numberId);
      return {
        number: numberId ?? DEFAULT_NUMBER_ID,
        fetched_at: new Date(list.fetchedAt).toISOString(),
        templates: list.templates
          .filter((t) => t.status.toUpperCase() === "APPROVED")
          .map((t) => ({
            name: t.name,
            language: t.language,
            status: "APPROVED" as const,
            category: t.category ?? null,
            components: t.components,
          })),
      } satisfies z.infer<typeof templatesAnswer>;
    },
  );
};
