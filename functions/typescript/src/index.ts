// The TypeScript test function (telemetry-api-starter-ts). Every invocation
// writes the same seven log lines as the Go and Python functions, through the
// Node.js runtime's own console, which AWS's runtime interface client patches
// to add the timestamp, request ID and level (text) or to write one JSON
// object per call (AWS_LAMBDA_LOG_FORMAT=JSON).
import type { Context } from "aws-lambda";

/** The invocation event: both fields are optional. */
export interface TestEvent {
  marker?: string;
  action?: "ok" | "fail" | "timeout";
}

/** What an invocation with action "ok" returns. */
export interface TestResult {
  ok: true;
  marker: string;
}

export const handler = async (event: TestEvent | null, context: Context): Promise<TestResult> => {
  const marker = event?.marker ?? "none";
  const action = event?.action ?? "ok";

  console.debug(`debug line ${marker}`);
  console.info(`info line ${marker}`);
  console.warn(`warn line ${marker}`);
  console.error(`error line ${marker}`);
  console.info(`multi line ${marker}\nsecond line\nthird line`);
  // Structured logging the Node.js way: one JSON object as the message. In
  // the text format it ends the line; in the JSON format it is the record's
  // "message" string.
  console.info(JSON.stringify({ level: "INFO", message: `structured line ${marker}`, marker }));
  console.info(`contact alice@example.com ${marker}`);

  switch (action) {
    case "fail":
      throw new Error(`boom ${marker}`);
    case "timeout":
      // Sleep well past the deadline: the runtime never answers in time.
      await new Promise((resolve) => setTimeout(resolve, context.getRemainingTimeInMillis() + 60_000));
      break;
  }
  return { ok: true, marker };
};
