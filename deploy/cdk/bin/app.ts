#!/usr/bin/env node
// The CDK app: the Grafana Loki extension's layers and the three test
// functions with it. Settings come from cdk.json's context or -c key=value
// (lib/context.ts lists them).
import { App } from 'aws-cdk-lib';
import { starterProps } from '../lib/context';
import { TelemetryApiStarterStack } from '../lib/starter-stack';

const app = new App();
const props = starterProps(app);
new TelemetryApiStarterStack(app, props.stackName, props);
