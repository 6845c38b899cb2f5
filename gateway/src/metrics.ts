import { Counter, collectDefaultMetrics, Histogram, Registry } from "prom-client";

/** One registry per gateway instance (tests run several in one process). */
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    httpRequests: new Counter({
      name: "wagate_http_requests_total",
      help: "HTTP requests answered, by route and status code",
      labelNames: ["method", "route", "status"] as const,
      registers: [registry],
    }),
    httpDuration: new Histogram({
      name: "wagate_http_request_duration_seconds",
      help: "HTTP request duration",
      labelNames: ["route"] as const,
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [registry],
    }),
    messagesAccepted: new Counter({
      name: "wagate_messages_accepted_total",
      help: "Messages committed to the outbox",
      labelNames: ["kind"] as const,
      registers: [registry],
    }),
    outboxSends: new Counter({
      name: "wagate_outbox_sends_total",
      help: "Send attempts by outcome",
      labelNames: ["outcome"] as const,
      registers: [registry],
    }),
    otpEvents: new Counter({
      name: "wagate_otp_events_total",
      help: "OTP issuance and verification events",
      labelNames: ["event"] as const,
      registers: [registry],
    }),
    webhookEvents: new Counter({
      name: "wagate_meta_webhook_events_total",
      help: "Meta webhook deliveries and their contents",
      labelNames: ["event"] as const,
      registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
