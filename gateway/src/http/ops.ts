import type { FastifyPluginAsync } from "fastify";
import type { Metrics } from "../metrics.js";
import type { Store } from "../store/store.js";

// Liveness, readiness and Prometheus metrics. The edge refuses /readyz and /metrics from the internet.

export const opsRoutes: FastifyPluginAsync<{ store: Store; metrics: Metrics }> = async (
  app,
  { store, metrics },
) => {
  app.get("/healthz", async () => ({ status: "ok" }));

  app.get("/readyz", async (request, reply) => {
    try {
      await store.ping();
      return { status: "ready" };
    } catch (error) {
      request.log.error({ err: error }, "readiness: database unreachable");
      return reply.status(503).send({ error: { code: "not_ready", message: "database unreachable" } });
    }
  });

  app.get("/metrics", async (_request, reply) => {
    const body = await metrics.registry.metrics();
    return reply.type(metrics.registry.contentType).send(body);
  });
};
