import type { FastifyPluginAsync } from "fastify";
import type { EventSink } from "../events.js";
import type { Metrics } from "../metrics.js";
import { resolveFrom } from "../numbers/from.js";
import type { OtpService } from "../otp/service.js";
import type { NumbersStore } from "../store/numbers.js";
import type { TemplateCatalog } from "../templates/catalog.js";
import type { RequestedTemplate } from "../templates/fit.js";
import type { ScopeGuard } from "./auth.js";
import { ApiError, unauthorized } from "./errors.js";
import { noQuery, otpRequestBody, otpVerifyBody } from "./schemas.js";

export interface OtpRoutesOptions {
  otp: OtpService;
  metrics: Metrics;
  guard: (scope: "otp") => ScopeGuard;
  onEnqueued: () => void;
  /** Receives `otp.verified`; resolves once it is persisted. */
  events?: EventSink;
  numbers: NumbersStore;
  /** The authentication template (OTP_TEMPLATE_NAME) is checked against the number's approved templates. */
  templates: TemplateCatalog;
  otpTemplate: RequestedTemplate;
}

/** The number's ceiling is a rolling hour: a fixed wait, not one computed from other subjects' codes. */
const NUMBER_LIMIT_RETRY_AFTER_SECONDS = 3600;

export const otpRoutes: FastifyPluginAsync<OtpRoutesOptions> = async (
  app,
  { otp, metrics, guard, onEnqueued, events, numbers, templates, otpTemplate },
) => {
  app.post(
    "/v1/otp",
    { onRequest: guard("otp"), schema: { body: otpRequestBody, querystring: noQuery } },
    async (request, reply) => {
      const subject = request.principal?.subject;
      if (!subject) throw unauthorized();
      const { to, from } = request.body as { to: string; from?: string };
      const sending = resolveFrom(numbers, from);
      if (!sending.web) {
        const checking = templates.check(sending.numberId, otpTemplate, { label: "OTP_TEMPLATE_NAME" });
        if (checking) await checking;
      }
      const result = await otp.issue(subject, to, sending);
      if (result.kind === "number_limit") {
        metrics.otpEvents.inc({ event: result.kind });
        // Every subject's codes count here: the answer names no limit and no time derived from them.
        reply.header("retry-after", String(NUMBER_LIMIT_RETRY_AFTER_SECONDS));
        throw new ApiError(429, "otp_unavailable", "no code can be sent to this number now; try again later");
      }
      if (result.kind !== "sent") {
        metrics.otpEvents.inc({ event: result.kind });
        reply.header("retry-after", String(Math.max(1, Math.ceil(result.retryAfterMs / 1000))));
        throw result.kind === "cooldown"
          ? new ApiError(
              429,
              "otp_cooldown",
              "this token subject sent a code to this number moments ago; wait before asking again",
            )
          : new ApiError(
              429,
              "otp_hourly_limit",
              "too many codes from this token subject to this number in the last hour",
            );
      }
      metrics.otpEvents.inc({ event: "issued" });
      request.log.info({ otpId: result.otpId, messageId: result.messageId, to }, "otp issued");
      onEnqueued();
      return reply.status(202).send({
        id: result.otpId,
        message_id: result.messageId,
        expires_at: new Date(result.expiresAt).toISOString(),
      });
    },
  );

  app.post(
    "/v1/otp/verify",
    { onRequest: guard("otp"), schema: { body: otpVerifyBody, querystring: noQuery } },
    async (request) => {
      const subject = request.principal?.subject;
      if (!subject) throw unauthorized();
      const { to, code } = request.body as { to: string; code: string };
      const result = await otp.verify(subject, to, code);
      metrics.otpEvents.inc({ event: result });
      if (result !== "verified") {
        // Wrong, expired, used, out of attempts or never issued: one answer, so none can be told apart.
        throw new ApiError(422, "otp_invalid", "the code is invalid or expired");
      }
      request.log.info({ to }, "otp verified");
      const at = Date.now();
      await events?.publish({
        type: "otp.verified",
        subject,
        occurredAt: at,
        data: { to, verified_at: new Date(at).toISOString() },
      });
      return { verified: true };
    },
  );
};
