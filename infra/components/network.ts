import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { PUBLIC_SUBNET_CIDR, securityGroupRules, VPC_CIDR } from "../plan/network.js";

export interface NetworkArgs {
  adminCidrs: string[];
  tags: Record<string, string>;
}

/** One VPC, one public subnet routed to an internet gateway, and the host's security group. */
export class Network extends pulumi.ComponentResource {
  readonly vpcId: pulumi.Output<string>;
  readonly subnetId: pulumi.Output<string>;
  /** The subnet's zone: the instance runs there, so the data volume is made there. */
  readonly availabilityZone: pulumi.Output<string>;
  readonly securityGroupId: pulumi.Output<string>;

  constructor(name: string, args: NetworkArgs, opts?: pulumi.ComponentResourceOptions) {
    super("wagate:network:Network", name, {}, opts);
    const parent = { parent: this };
    const tags = (role: string) => ({ ...args.tags, Name: `${name}-${role}` });

    const vpc = new aws.ec2.Vpc(
      `${name}-vpc`,
      { cidrBlock: VPC_CIDR, enableDnsHostnames: true, enableDnsSupport: true, tags: tags("vpc") },
      parent,
    );
    const zones = aws.getAvailabilityZonesOutput({ state: "available" }, parent);
    const subnet = new aws.ec2.Subnet(
      `${name}-public`,
      {
        vpcId: vpc.id,
        cidrBlock: PUBLIC_SUBNET_CIDR,
        // The first zone in name order, so that every run picks the same one.
        availabilityZone: zones.names.apply((names) => [...names].sort()[0] ?? ""),
        // The host gets its address from the Elastic IP, never an ephemeral one.
        mapPublicIpOnLaunch: false,
        tags: tags("public"),
      },
      parent,
    );
    const gateway = new aws.ec2.InternetGateway(`${name}-igw`, { vpcId: vpc.id, tags: tags("igw") }, parent);
    const routes = new aws.ec2.RouteTable(
      `${name}-public`,
      { vpcId: vpc.id, routes: [{ cidrBlock: "0.0.0.0/0", gatewayId: gateway.id }], tags: tags("public") },
      parent,
    );
    new aws.ec2.RouteTableAssociation(
      `${name}-public`,
      { subnetId: subnet.id, routeTableId: routes.id },
      parent,
    );

    const rules = securityGroupRules(args.adminCidrs);
    const group = new aws.ec2.SecurityGroup(
      `${name}-host`,
      {
        vpcId: vpc.id,
        description: "wagate host: HTTP/HTTPS from anywhere, SSH from the admin ranges",
        ingress: rules.ingress,
        egress: rules.egress,
        tags: tags("host"),
      },
      parent,
    );

    this.vpcId = vpc.id;
    this.subnetId = subnet.id;
    this.availabilityZone = subnet.availabilityZone;
    this.securityGroupId = group.id;
    this.registerOutputs({
      vpcId: this.vpcId,
      subnetId: this.subnetId,
      availabilityZone: this.availabilityZone,
      securityGroupId: this.securityGroupId,
    });
  }
}
