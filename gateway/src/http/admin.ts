import type { FastifyPluginAsync } from "fastify";
import type { Store } from "../store/store.js";
import type { ScopeGuard } from "./auth.js";
import { noQuery, revokeBody } from "./schemas.js";

/** `POST /v1/admin/revocations` (scope `admin`): revoke a token id without shell access to the host. */
export const adminRoutes: FastifyPluginAsync<{
  store: Store;
  guard: (scope: "admin") => ScopeGuard;
}> = async (app, { store, guard }) => {
  app.post(
    "/v1/admin/revocations",
    { onRequest: guard("admin"), schema: { body: revokeBody, querystring: noQuery } },
    async (request, reply) => {
      const { jti, reason } = request.body as { jti: string; reason?: string };
      await store.revokeToken(jti, Date.now(), reason);
      request.log.info({ jti, by: request.principal?.subject }, "token revoked");
      return reply.status(201).send({ jti, revoked: true });
    },
  );
};
