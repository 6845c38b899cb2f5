import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

export interface DnsArgs {
  hostedZoneId: string;
  domain: string;
  address: pulumi.Input<string>;
}

/** The gateway's A record in a Route 53 zone, so the certificate can be requested on the first `pulumi up`. */
export class Dns extends pulumi.ComponentResource {
  readonly record: aws.route53.Record;

  constructor(name: string, args: DnsArgs, opts?: pulumi.ComponentResourceOptions) {
    super("wagate:dns:Dns", name, {}, opts);
    this.record = new aws.route53.Record(
      name,
      { zoneId: args.hostedZoneId, name: args.domain, type: "A", ttl: 300, records: [args.address] },
      { parent: this },
    );
    this.registerOutputs({ fqdn: this.record.fqdn });
  }
}
