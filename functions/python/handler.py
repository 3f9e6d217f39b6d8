"""The Python test function (telemetry-api-starter-py).

Every invocation writes the same seven log lines as the Go and TypeScript
functions through Python's standard logging, on the root logger. The runtime
sets the root logger's level from AWS_LAMBDA_LOG_LEVEL and formats each
record (text or JSON, AWS_LAMBDA_LOG_FORMAT), as Lambda's Python runtime does;
with the text format the function sets the level itself (below).
"""

import logging
import os
import time

logger = logging.getLogger()
# With the text format Lambda sets no level (AWS_LAMBDA_LOG_LEVEL applies to
# the JSON format only) and Python's root logger keeps WARNING: the function
# sets its own, as Python functions on Lambda do, so that every level of the
# spec is written. With Lambda's level set, the runtime's setting stands.
if "AWS_LAMBDA_LOG_LEVEL" not in os.environ:
    logger.setLevel(logging.DEBUG)


def handler(event, context):
    event = event if isinstance(event, dict) else {}
    marker = event.get("marker", "none")
    action = event.get("action", "ok")

    logger.debug("debug line %s", marker)
    logger.info("info line %s", marker)
    logger.warning("warn line %s", marker)
    logger.error("error line %s", marker)
    logger.info("multi line %s\nsecond line\nthird line", marker)
    # Python's structured log: fields passed as `extra` become top-level keys
    # of the runtime's JSON record, beside level and message.
    logger.info("structured line %s", marker, extra={"marker": marker})
    logger.info("contact alice@example.com %s", marker)

    if action == "fail":
        raise Exception(f"boom {marker}")
    if action == "timeout":
        # Sleep well past the deadline: the runtime never answers in time.
        time.sleep(context.get_remaining_time_in_millis() / 1000 + 60)
    return {"ok": True, "marker": marker}
