import { createRequire } from "node:module";
import * as pulumi from "@pulumi/pulumi";

// A stand-in for the Pulumi engine on loopback: the resource monitor and engine gRPC services a program's Node
// process talks to, answered by Pulumi's own MockMonitor with the test's mocks. With it, the program runs the
// way `pulumi up` starts it (Pulumi's nodejs runner in a separate process, `--import tsx` from Pulumi.yaml),
// which the in-process mocks cannot show: that the ESM TypeScript entry point loads at all.

const require = createRequire(import.meta.url);

interface GrpcServer {
  addService(service: unknown, handlers: Record<string, Handler>): void;
  bindAsync(
    address: string,
    credentials: unknown,
    callback: (error: Error | null, port: number) => void,
  ): void;
  forceShutdown(): void;
}
type Handler = (call: { request: Request }, callback: (error: unknown, response?: unknown) => void) => void;
interface Request {
  getId(): string;
  getUrn(): string;
  getSeverity(): number;
  getMessage(): string;
  getOutputs(): { toJavaScript(): Record<string, unknown> } | undefined;
}

const grpc = require("@grpc/grpc-js") as {
  Server: new (options?: Record<string, unknown>) => GrpcServer;
  ServerCredentials: { createInsecure(): unknown };
};
const resourceRpc = require("@pulumi/pulumi/proto/resource_grpc_pb.js") as {
  ResourceMonitorService: unknown;
};
const resourcePb = require("@pulumi/pulumi/proto/resource_pb.js") as {
  SupportsFeatureResponse: new () => { setHassupport(v: boolean): void };
};
const engineRpc = require("@pulumi/pulumi/proto/engine_grpc_pb.js") as { EngineService: unknown };
const enginePb = require("@pulumi/pulumi/proto/engine_pb.js") as {
  GetRootResourceResponse: new () => { setUrn(v: string): void };
  SetRootResourceResponse: new () => unknown;
};
const { Empty } = require("google-protobuf/google/protobuf/empty_pb.js") as { Empty: new () => unknown };
const { MockMonitor } = require("@pulumi/pulumi/runtime/mocks.js") as {
  MockMonitor: new (mocks: pulumi.runtime.Mocks) => Record<string, (req: Request, cb: unknown) => unknown>;
};

export interface EngineLog {
  severity: number;
  message: string;
}

export interface FakeEngine {
  address: string;
  logs: EngineLog[];
  /** Outputs the program registered on its root (stack) resource. */
  stackOutputs(): Record<string, unknown> | undefined;
  close(): void;
}

export async function startFakeEngine(
  mocks: pulumi.runtime.Mocks,
  project: string,
  stack: string,
): Promise<FakeEngine> {
  // MockMonitor names resources after this process's project and stack.
  await pulumi.runtime.setMocks(mocks, project, stack);
  const monitor = new MockMonitor(mocks);
  const logs: EngineLog[] = [];
  let rootUrn = "";
  let outputs: Record<string, unknown> | undefined;
  const delegate =
    (method: string): Handler =>
    (call, callback) =>
      monitor[method]?.call(monitor, call.request, callback);
  const empty: Handler = (_call, callback) => callback(null, new Empty());

  const server = new grpc.Server({ "grpc.max_receive_message_length": 400 * 1024 * 1024 });
  server.addService(resourceRpc.ResourceMonitorService, {
    getDeploymentInfo: delegate("getDeploymentInfo"),
    supportsFeature: (call, callback) => {
      const response = new resourcePb.SupportsFeatureResponse();
      response.setHassupport(call.request.getId() !== "outputValues");
      callback(null, response);
    },
    invoke: delegate("invoke"),
    call: (_call, callback) => callback(new Error("calls are not supported here")),
    readResource: delegate("readResource"),
    existsResource: delegate("existsResource"),
    registerResource: delegate("registerResource"),
    registerResourceOutputs: (call, callback) => {
      if (call.request.getUrn() === rootUrn) outputs = call.request.getOutputs()?.toJavaScript();
      monitor.registerResourceOutputs?.call(monitor, call.request, () => callback(null, new Empty()));
    },
    registerStackTransform: empty,
    registerStackInvokeTransform: empty,
    registerResourceHook: empty,
    registerErrorHook: empty,
    registerPackage: delegate("registerPackage"),
    signalAndWaitForShutdown: empty,
  });
  server.addService(engineRpc.EngineService, {
    log: (call, callback) => {
      logs.push({ severity: call.request.getSeverity(), message: call.request.getMessage() });
      callback(null, new Empty());
    },
    getRootResource: (_call, callback) => {
      const response = new enginePb.GetRootResourceResponse();
      response.setUrn(rootUrn);
      callback(null, response);
    },
    setRootResource: (call, callback) => {
      rootUrn = call.request.getUrn();
      callback(null, new enginePb.SetRootResourceResponse());
    },
    startDebugging: empty,
    requirePulumiVersion: empty,
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, p) =>
      error ? reject(error) : resolve(p),
    ),
  );
  return {
    address: `127.0.0.1:${port}`,
    logs,
    stackOutputs: () => outputs,
    close: () => server.forceShutdown(),
  };
}
