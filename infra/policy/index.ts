import { PolicyPack } from "@pulumi/policy";
import { resourcePolicies, stackPolicies } from "./rules.js";

// `pulumi preview --policy-pack infra/policy`: the rules of rules.ts, all mandatory.
new PolicyPack("wagate", {
  description:
    "wagate's guard rails: IMDSv2, encrypted volumes, a guarded data volume snapshotted hourly, no open SSH, no public bucket, no admin IAM, no secrets in user data",
  enforcementLevel: "mandatory",
  policies: [...resourcePolicies, ...stackPolicies],
});
