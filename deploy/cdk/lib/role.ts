import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';

/**
 * The EC2 actions Lambda needs, with the function's role, to attach a
 * function to a VPC: those of the AWS managed policy
 * AWSLambdaVPCAccessExecutionRole, without its logs:* actions.
 * https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AWSLambdaVPCAccessExecutionRole.html
 */
export const VPC_ACCESS_ACTIONS = [
  'ec2:CreateNetworkInterface',
  'ec2:DescribeNetworkInterfaces',
  'ec2:DescribeSubnets',
  'ec2:DeleteNetworkInterface',
  'ec2:AssignPrivateIpAddresses',
  'ec2:UnassignPrivateIpAddresses',
];

/** Props of roleWithoutLogs. */
export interface RoleWithoutLogsProps {
  /** Whether the function runs in a VPC (its role then needs VPC_ACCESS_ACTIONS on *). */
  readonly vpc: boolean;
}

/**
 * roleWithoutLogs is an execution role with no logs:* permission, for a
 * function whose logs go to Loki only: Lambda cannot write to CloudWatch
 * Logs without them, so none are written or billed (Lambda has no switch to
 * turn them off). The Telemetry API still delivers every line to the
 * extension. CDK's default role would attach AWSLambdaBasicExecutionRole,
 * and AWSLambdaVPCAccessExecutionRole in a VPC, both of which grant logs:*.
 */
export function roleWithoutLogs(scope: Construct, id: string, props: RoleWithoutLogsProps): iam.Role {
  const role = new iam.Role(scope, id, {
    assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
    description: 'Lambda execution role without CloudWatch Logs: the logs go to Loki',
  });
  if (props.vpc) {
    role.addToPolicy(new iam.PolicyStatement({ actions: VPC_ACCESS_ACTIONS, resources: ['*'] }));
  }
  return role;
}
