#!/usr/bin/env python3
"""A stand-in for AWS's Python runtime interface client (awslambdaric).

Lambda's Python runtime is awslambdaric: it loads the handler named by
_HANDLER, asks the Runtime API for invocations, posts the results, and
formats every record of Python's logging module. awslambdaric is published
on PyPI only (with a native part), and PyPI is out of reach where this
project is tested, so this file does its job with the standard library, and
prints what it prints:

- text format: "[LEVEL]\t<UTC time, ms>Z\t<request ID>\t<message>\n";
- JSON format (AWS_LAMBDA_LOG_FORMAT=JSON): one object per record with
  timestamp, level, message, logger, requestId, the exception fields when
  there is one, and `extra` fields as top-level keys;
- the root logger's level from AWS_LAMBDA_LOG_LEVEL (TRACE meaning DEBUG),
  left at Python's default (WARNING) when it is unset;
- with _LAMBDA_TELEMETRY_LOG_FD, each record as one frame on that file
  descriptor (4-byte type carrying format and level, 4-byte length, 8-byte
  timestamp in microseconds, message; big-endian), so a multi-line message
  stays one record; without it, records go to stdout as they are;
- a handler's exception: logged as an ERROR record, posted to
  /invocation/{id}/error as {errorMessage, errorType, requestId, stackTrace};
  a handler that cannot be loaded: posted to /init/error, exit status 1.

The behaviour follows awslambdaric's source (bootstrap.py,
lambda_runtime_log_utils.py, lambda_runtime_client.py); see README.md.
"""

import http.client
import importlib
import json
import logging
import os
import sys
import time
import traceback
from datetime import datetime, timezone

RUNTIME_API_VERSION = "2018-06-01"

# Frame types on the telemetry fd: 0xA55A0002 JSON, 0xA55A0003 text, with
# the level in bits 2-4 (DEBUG 2, INFO 3, WARNING 4, ERROR 5, CRITICAL 6).
_LEVEL_BITS = {
    logging.NOTSET: 0,
    logging.DEBUG: 2 << 2,
    logging.INFO: 3 << 2,
    logging.WARNING: 4 << 2,
    logging.ERROR: 5 << 2,
    logging.CRITICAL: 6 << 2,
}
_JSON_FRAME = 0xA55A0002
_TEXT_FRAME = 0xA55A0003

# Keys of a LogRecord that are not the caller's `extra` fields.
_RECORD_KEYS = {
    "name", "msg", "args", "levelname", "levelno", "pathname", "filename",
    "module", "exc_info", "exc_text", "stack_info", "lineno", "funcName",
    "created", "msecs", "relativeCreated", "thread", "threadName",
    "processName", "process", "aws_request_id", "tenant_id",
    "_frame_type",
}

_TEXT_FORMAT = "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
# awslambdaric prints its error records' traceback lines with leading spaces
# turned into no-break spaces, the lines joined by carriage returns on
# stdout, so that one error stays one line there.
_NBSP = "\u00a0"

_UNHANDLED_WARNING = (
    "Unhandled exception. The most likely cause is an issue in the function code. However, in rare cases, "
    "a Lambda runtime update can cause unexpected function behavior. For functions using managed runtimes, "
    "runtime updates can be triggered by a function change, or can be applied automatically. To determine if "
    "the runtime has been updated, check the runtime version in the INIT_START log entry. If this error "
    "correlates with a change in the runtime version, you may be able to mitigate this error by temporarily "
    "rolling back to the previous runtime version. For more information, see "
    "https://docs.aws.amazon.com/lambda/latest/dg/runtimes-update.html"
)

_request_id = None


def _level_of(record):
    """The record's level rounded down to a standard one (0..50)."""
    return min(50, max(0, record.levelno)) // 10 * 10


class JsonFormatter(logging.Formatter):
    """One JSON object per record, as the JSON log format has it."""

    def format(self, record):
        record.levelno = _level_of(record)
        record.levelname = logging.getLevelName(record.levelno)
        record._frame_type = _JSON_FRAME | _LEVEL_BITS.get(record.levelno, 0)
        created = datetime.fromtimestamp(record.created, tz=timezone.utc)
        exc = record.exc_info
        out = {
            "timestamp": created.strftime(_TIME_FORMAT + ".%f")[:-3] + "Z",
            "level": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
            "stackTrace": traceback.format_tb(exc[2]) if exc else None,
            "errorType": exc[0].__name__ if exc else None,
            "errorMessage": str(exc[1]) if exc else None,
            "requestId": getattr(record, "aws_request_id", None),
            "location": f"{record.pathname}:{record.funcName}:{record.lineno}" if exc else None,
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_KEYS and key not in out:
                out[key] = value
        out = {k: v for k, v in out.items() if v is not None}
        return json.dumps(out, ensure_ascii=False) + "\n"


class StdoutSink:
    """Records to stdout as they are (a multi-line message is several lines)."""

    def log(self, message, frame_type=None):
        sys.stdout.write(message)

    def log_error(self, lines, frame_type):
        sys.stdout.write("\r".join(lines) + "\n")


class FramedSink:
    """Records as frames on the telemetry fd, one frame per record."""

    def __init__(self, fd):
        self.file = os.fdopen(fd, "wb", 0)

    def log(self, message, frame_type=None):
        data = message.encode("utf-8")
        micros = time.time_ns() // 1000
        head = (frame_type or _TEXT_FRAME).to_bytes(4, "big") + len(data).to_bytes(4, "big") + micros.to_bytes(8, "big")
        self.file.write(head + data)

    def log_error(self, lines, frame_type):
        self.log("\n".join(lines), frame_type)


class LambdaHandler(logging.Handler):
    """Hands each formatted record to the sink; framed by level when the
    format is JSON or a log level is set, else as a plain text frame."""

    def __init__(self, sink, by_level):
        super().__init__()
        self.sink = sink
        self.by_level = by_level
        self.addFilter(self._add_request_id)

    @staticmethod
    def _add_request_id(record):
        record.aws_request_id = _request_id or ""
        return True

    def emit(self, record):
        message = self.format(record)
        frame = None
        if self.by_level:
            frame = getattr(record, "_frame_type", None) or _TEXT_FRAME | _LEVEL_BITS.get(_level_of(record), 0)
        self.sink.log(message, frame)


class Unbuffered:
    """stdout and stderr flushed at every write, as in Lambda."""

    def __init__(self, stream):
        self.stream = stream

    def __getattr__(self, name):
        return getattr(self.stream, name)

    def write(self, text):
        self.stream.write(text)
        self.stream.flush()

    def writelines(self, lines):
        self.stream.writelines(lines)
        self.stream.flush()


def setup_logging(json_format, level, sink):
    logging.Formatter.converter = time.gmtime
    handler = LambdaHandler(sink, by_level=json_format or bool(level))
    handler.setFormatter(JsonFormatter() if json_format else logging.Formatter(_TEXT_FORMAT, _TIME_FORMAT))
    root = logging.getLogger()
    if level in logging._nameToLevel:
        root.setLevel(level)
    root.addHandler(handler)


def log_error(error, sink, json_format):
    """Logs an invocation's or the init's error as one ERROR record."""
    if json_format:
        record = {"timestamp": time.strftime(_TIME_FORMAT, time.gmtime()), "level": "ERROR", **error}
        sink.log_error([json.dumps(record)], _JSON_FRAME | _LEVEL_BITS[logging.ERROR])
        return
    head = "[ERROR]"
    if error.get("errorType"):
        head += " " + error["errorType"]
    if error.get("errorMessage"):
        head += (":" if error.get("errorType") else "") + " " + error["errorMessage"]
    lines = [head, "Traceback (most recent call last):"]
    for entry in error.get("stackTrace") or []:
        for line in entry.splitlines() or [""]:
            stripped = line.lstrip(" ")
            lines.append(_NBSP * (len(line) - len(stripped)) + stripped)
    sink.log_error(lines, _TEXT_FRAME | _LEVEL_BITS[logging.ERROR])


class Fault(Exception):
    """A failure of the runtime's own (loading the handler, decoding the
    event, encoding the result), with Lambda's error type for it."""

    def __init__(self, error_type, message, trace=None):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.trace = trace or []


def load_handler(name):
    try:
        module_name, function_name = name.rsplit(".", 1)
    except ValueError as e:
        raise Fault("Runtime.MalformedHandlerName", f"Bad handler '{name}': {e}")
    if module_name.split(".")[0] in sys.builtin_module_names:
        raise Fault("Runtime.BuiltInModuleConflict", f"Cannot use built-in module {module_name} as a handler module")
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as e:
        raise Fault("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {e}")
    except SyntaxError as e:
        trace = [f'  File "{e.filename}" Line {e.lineno}\n    {e.text}']
        raise Fault("Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {e}", trace)
    try:
        return getattr(module, function_name)
    except AttributeError:
        raise Fault("Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module '{module_name}'")


def user_traceback(tb):
    """The traceback's frames from the first one outside this file."""
    frames = traceback.extract_tb(tb)
    for i, frame in enumerate(frames):
        if "/bootstrap.py" not in frame.filename:
            return frames[i:]
    return frames


def error_body(message, error_type, trace, request_id=""):
    return {"errorMessage": message or "", "errorType": error_type or "", "requestId": request_id, "stackTrace": trace or []}


class Context:
    """The handler's context object, as awslambdaric builds it."""

    def __init__(self, request_id, deadline_ms, function_arn):
        self.aws_request_id = request_id
        self.invoked_function_arn = function_arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self._deadline_ms = int(deadline_ms or 0)

    def get_remaining_time_in_millis(self):
        return max(self._deadline_ms - int(time.time() * 1000), 0)


class RuntimeClient:
    """The Runtime API calls, over one kept-alive HTTP connection."""

    def __init__(self, address):
        self.address = address
        self.conn = http.client.HTTPConnection(address)

    def _call(self, method, path, body=None, headers=None, want=(200, 202)):
        url = f"/{RUNTIME_API_VERSION}/runtime{path}"
        try:
            self.conn.request(method, url, body=body, headers=headers or {})
            response = self.conn.getresponse()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            # The server closed the kept-alive connection while it was idle:
            # the request never reached it; send it again on a new one.
            self.conn.close()
            self.conn.request(method, url, body=body, headers=headers or {})
            response = self.conn.getresponse()
        data = response.read()
        if response.status not in want:
            raise RuntimeError(f"{method} {path}: {response.status} {data[:200]!r}")
        return response, data

    def next(self):
        response, body = self._call("GET", "/invocation/next", want=(200,))
        if not response.getheader("Lambda-Runtime-Aws-Request-Id"):
            raise RuntimeError("/invocation/next: no Lambda-Runtime-Aws-Request-Id header")
        return response, body

    def post_response(self, request_id, body, content_type):
        self._call("POST", f"/invocation/{request_id}/response", body, {"Content-Type": content_type})

    def post_error(self, request_id, body, xray_cause):
        headers = {"Content-Type": "application/json", "Lambda-Runtime-Function-XRay-Error-Cause": xray_cause}
        self._call("POST", f"/invocation/{request_id}/error", body, headers)

    def post_init_error(self, body):
        self._call("POST", "/init/error", body, want=(202,))


def xray_cause(error_type, message, frames):
    stack = [{"label": f.name, "path": f.filename, "line": f.lineno} for f in frames]
    return json.dumps({
        "working_directory": os.getcwd(),
        "exceptions": [{"message": message, "type": error_type, "stack": stack}],
        "paths": sorted({f.filename for f in frames}),
    })


def decode_event(body, content_type):
    if content_type != "application/json":
        return body
    try:
        return json.loads(body)
    except Exception as e:
        raise Fault("Runtime.UnmarshalError", f"Unable to unmarshal input: {e}")


def encode_result(result):
    if isinstance(result, bytes):
        return result, "application/unknown"
    try:
        return json.dumps(result).encode("utf-8"), "application/json"
    except Exception as e:
        raise Fault("Runtime.MarshalError", f"Unable to marshal response: {e}")


def invoke(client, handler, response, body, sink, json_format):
    request_id = response.getheader("Lambda-Runtime-Aws-Request-Id")
    try:
        context = Context(request_id, response.getheader("Lambda-Runtime-Deadline-Ms"),
                          response.getheader("Lambda-Runtime-Invoked-Function-Arn"))
        event = decode_event(body, response.getheader("Content-Type") or "application/json")
        out, out_type = encode_result(handler(event, context))
    except Fault as e:
        error = error_body(e.message, e.error_type, e.trace, request_id)
        log_error(error, sink, json_format)
        client.post_error(request_id, json.dumps(error), xray_cause("LambdaValidationError", e.message, []))
        return
    except Exception as e:
        frames = user_traceback(sys.exc_info()[2])
        error = error_body(str(e), type(e).__name__, traceback.format_list(frames), request_id)
        log_error(error, sink, json_format)
        client.post_error(request_id, json.dumps(error), xray_cause(type(e).__name__, str(e), frames))
        return
    client.post_response(request_id, out, out_type)


def main():
    global _request_id
    handler_name = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("_HANDLER", "")
    sys.path.insert(0, os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd())
    json_format = (os.environ.get("AWS_LAMBDA_LOG_FORMAT") or "").upper() == "JSON"
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL", "").upper()
    level = "DEBUG" if level == "TRACE" else level
    sys.stdout = Unbuffered(sys.stdout)
    sys.stderr = Unbuffered(sys.stderr)
    fd = os.environ.pop("_LAMBDA_TELEMETRY_LOG_FD", None)
    sink = FramedSink(int(fd)) if fd is not None else StdoutSink()
    setup_logging(json_format, level, sink)
    client = RuntimeClient(os.environ["AWS_LAMBDA_RUNTIME_API"])
    try:
        handler = load_handler(handler_name)
    except Exception as e:
        if isinstance(e, Fault):
            error = error_body(e.message, e.error_type, e.trace)
        else:
            frames = user_traceback(sys.exc_info()[2])
            error = error_body(str(e), type(e).__name__, traceback.format_list(frames))
        logging.warning(_UNHANDLED_WARNING)
        log_error(error, sink, json_format)
        client.post_init_error(json.dumps(error))
        sys.exit(1)
    while True:
        response, body = client.next()
        _request_id = response.getheader("Lambda-Runtime-Aws-Request-Id")
        trace = response.getheader("Lambda-Runtime-Trace-Id")
        if trace is not None:
            os.environ["_X_AMZN_TRACE_ID"] = trace
        else:
            os.environ.pop("_X_AMZN_TRACE_ID", None)
        invoke(client, handler, response, body, sink, json_format)


if __name__ == "__main__":
    main()
