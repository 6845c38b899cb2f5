import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Started, startProcess } from "../../scripts/lib/processes.js";
import { resourcePolicies, stackPolicies } from "../policy/rules.js";

// The policy pack as `pulumi preview --policy-pack infra/policy` runs it: Pulumi's own runner
// (@pulumi/pulumi/cmd/run-policy-pack, which require()s the pack through its CommonJS ts-node) started in the
// pack's directory. It serves the analyzer over gRPC on loopback and prints the port; the test then talks to it
// with Pulumi's analyzer protocol, as the engine does.

const require = createRequire(import.meta.url);
const grpc = require("@grpc/grpc-js") as {
  credentials: { createInsecure(): unknown };
};
const analyzerRpc = require("@pulumi/pulumi/proto/analyzer_grpc_pb.js") as {
  AnalyzerClient: new (address: string, credentials: unknown) => AnalyzerClient;
};
const analyzerPb = require("@pulumi/pulumi/proto/analyzer_pb.js") as {
  AnalyzeRequest: new () => AnalyzeRequest;
  AnalyzerResourceOptions: new () => unknown;
};
const { Empty } = require("google-protobuf/google/protobuf/empty_pb.js") as { Empty: new () => unknown };
const { Struct } = require("google-protobuf/google/protobuf/struct_pb.js") as {
  Struct: { fromJavaScript(value: Record<string, unknown>): unknown };
};

interface AnalyzeRequest {
  setType(v: string): void;
  setProperties(v: unknown): void;
  setUrn(v: string): void;
  setName(v: string): void;
  setOptions(v: unknown): void;
}
interface Diagnostic {
  getPolicyname(): string;
  getMessage(): string;
}
type Callback<T> = (error: Error | null, response: T) => void;
interface AnalyzerClient {
  getAnalyzerInfo(
    request: unknown,
    callback: Callback<{ getName(): string; getPoliciesList(): { getName(): string }[] }>,
  ): void;
  analyze(request: AnalyzeRequest, callback: Callback<{ getDiagnosticsList(): Diagnostic[] }>): void;
  close(): void;
}

const packDir = fileURLToPath(new URL("../policy/", import.meta.url));
let pack: Started;
let client: AnalyzerClient;

beforeAll(async () => {
  pack = startProcess(
    "policy-pack",
    process.execPath,
    [require.resolve("@pulumi/pulumi/cmd/run-policy-pack"), "127.0.0.1:1", "."],
    {
      cwd: packDir,
    },
  );
  let stderr = "";
  pack.child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const port = await new Promise<number>((resolve, reject) => {
    let stdout = "";
    pack.child.stdout?.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      const match = /^(\d+)\s*$/m.exec(stdout);
      if (match) resolve(Number(match[1]));
    });
    pack.exited.then((code) =>
      reject(new Error(`the policy pack exited (${code}) before serving: ${stderr}`)),
    );
  });
  client = new analyzerRpc.AnalyzerClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
});

afterAll(async () => {
  client?.close();
  await pack?.stop();
});

const call = <T>(fn: (callback: Callback<T>) => void) =>
  new Promise<T>((resolve, reject) => fn((error, response) => (error ? reject(error) : resolve(response))));

async function analyze(type: string, props: Record<string, unknown>): Promise<string[]> {
  const request = new analyzerPb.AnalyzeRequest();
  request.setType(type);
  request.setName("r");
  request.setUrn(`urn:pulumi:test::wagate::${type}::r`);
  request.setProperties(Struct.fromJavaScript(props));
  // The engine always sends the resource's options (empty here); the pack refuses requests without them.
  request.setOptions(new analyzerPb.AnalyzerResourceOptions());
  const response = await call<{ getDiagnosticsList(): Diagnostic[] }>((cb) => client.analyze(request, cb));
  return response.getDiagnosticsList().map((d) => d.getPolicyname());
}

describe("the policy pack under Pulumi's runner", () => {
  it("serves every rule of rules.ts", async () => {
    const info = await call<{ getName(): string; getPoliciesList(): { getName(): string }[] }>((cb) =>
      client.getAnalyzerInfo(new Empty(), cb),
    );
    expect(info.getName()).toBe("wagate");
    expect(
      info
        .getPoliciesList()
        .map((p) => p.getName())
        .sort(),
    ).toEqual([...resourcePolicies, ...stackPolicies].map((p) => p.name).sort());
  });

  it("reports SSH open to the internet and IMDSv1, and passes a compliant resource", async () => {
    const ssh = { ingress: [{ protocol: "tcp", fromPort: 22, toPort: 22, cidrBlocks: ["0.0.0.0/0"] }] };
    expect(await analyze("aws:ec2/securityGroup:SecurityGroup", ssh)).toEqual(
      expect.arrayContaining(["no-ssh-from-internet", "no-internet-ingress-except-web"]),
    );
    const instance = { metadataOptions: { httpTokens: "optional" }, rootBlockDevice: { encrypted: true } };
    expect(await analyze("aws:ec2/instance:Instance", instance)).toEqual(["imdsv2-required"]);
    const good = {
      metadataOptions: { httpTokens: "required", httpPutResponseHopLimit: 1 },
      rootBlockDevice: { encrypted: true },
    };
    expect(await analyze("aws:ec2/instance:Instance", good)).toEqual([]);
  });
});
