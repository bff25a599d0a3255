"""A route's JSON body, read and checked the same way for every protocol: the size limit applies while reading
(before parsing), then JSON, then the protocol's schema; each failure is a 400 or 413 in the OpenAI error
shape that names the offending field (`error.param`, e.g. `messages.0.role`). Since the routes read their own
body, `body_openapi` publishes its schema through FastAPI's `openapi_extra`."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from server.errors import ApiError

Parsed = TypeVar("Parsed")
Model = TypeVar("Model", bound=BaseModel)


class RequestInvalid(Exception):
    """The body does not match the schema; `param` names the first offending field (e.g.
    `messages.0.role`)."""

    def __init__(self, message: str, param: str | None) -> None:
        super().__init__(message)
        self.param = param


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing more than `limit` bytes while reading (a chunked body has no Content-Length)."""
    too_large = ApiError(413, f"Request body is larger than {limit} bytes.", "invalid_request_error",
                         "request_too_large")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise too_large
    except ClientDisconnect:
        # Nobody to answer and nothing wrong here: the request log says so (status 499, as nginx logs it).
        raise ApiError(499, "The client closed the connection before sending the whole body.",
                       "invalid_request_error", "client_disconnected") from None
    return bytes(body)


def body_openapi(path: str, model: type[BaseModel], answer: str,
                 answer_types: tuple[str, ...]) -> dict[str, Any]:
    """The `openapi_extra` of the agent route at `path` whose body is `model` and whose 200 is `answer`."""
    escaped = path.replace("/", "~1")
    schema = model.model_json_schema(
        ref_template=f"#/paths/{escaped}/post/requestBody/content/application~1json/schema/$defs/{{model}}")
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "responses": {
            "200": {"description": answer, "content": {
                kind: {"schema": {"type": "string" if kind == "text/event-stream" else "object"}}
                for kind in answer_types}},
            "400": {"description": "Invalid JSON or an invalid field (`error.param` names it)."},
            "401": {"description": "Missing or invalid bearer token."},
            "413": {"description": "The body is larger than MAX_REQUEST_BYTES."},
            "502": {"description": "The model or an upstream service failed before any output."},
            "504": {"description": "The model did not answer in time."},
        },
    }


def parse_body(raw: bytes, parse: Callable[[Any], Parsed]) -> Parsed:
    """Decode `raw` as JSON and hand it to `parse` (which raises `RequestInvalid`); failures become a 400."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiError(400, "The request body is not valid JSON.", "invalid_request_error",
                       "invalid_json") from None
    except RecursionError:
        raise ApiError(400, "The request body is nested too deeply.", "invalid_request_error",
                       "invalid_json") from None
    try:
        return parse(body)
    except RequestInvalid as invalid:
        raise ApiError(400, str(invalid), "invalid_request_error", "invalid_value", invalid.param) from None


def validated(model: type[Model], body: Any) -> Model:
    """`body` (decoded JSON) as `model`; raise `RequestInvalid` naming the first offending field."""
    if not isinstance(body, dict):
        raise RequestInvalid("The request body must be a JSON object.", None)
    if (param := _lone_surrogate_path(body)) is not None:
        raise RequestInvalid(f"Invalid value for '{param}': the text contains a lone UTF-16 surrogate "
                             "(an unpaired \\ud800-\\udfff escape), which is not valid Unicode.", param)
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        # With unions the deepest error is the telling one ("content.0.text missing", not "not a string").
        first = max(exc.errors(include_url=False, include_input=False), key=lambda e: len(e["loc"]))
        param = _field_path(first["loc"], body)
        raise RequestInvalid(f"Invalid value for '{param}': {first['msg']}.", param) from None
    except RecursionError:
        raise RequestInvalid("The request body is nested too deeply.", None) from None


_SURROGATE = re.compile("[\ud800-\udfff]")


def _lone_surrogate_path(body: Any) -> str | None:
    """Where a JSON `\\ud800`-style escape left a string that cannot be encoded (it would fail deep inside the
    model call otherwise). Iterative, so a deeply nested body cannot exhaust the stack."""
    pending: list[tuple[Any, str]] = [(body, "")]
    while pending:
        value, path = pending.pop()
        if isinstance(value, str):
            if not value.isascii() and _SURROGATE.search(value):
                return path
        elif isinstance(value, dict):
            for key, item in value.items():
                if not key.isascii() and _SURROGATE.search(key):
                    return f"{path}.(key)" if path else "(key)"
                pending.append((item, f"{path}.{key}" if path else key))
        elif isinstance(value, list):
            pending += [(item, f"{path}.{i}") for i, item in enumerate(value)]
    return None


def _field_path(loc: tuple[int | str, ...], body: Any) -> str:
    """The offending field's path in the body as sent. Pydantic puts union members into error paths (`str`,
    `list[...]`, a tagged union's tag such as `text` or `user`): followed through the body, a part that names
    no key or index there is such a member and is dropped, except a last part, the missing field itself."""
    path: list[str] = []
    value = body
    for i, part in enumerate(loc):
        if _has(value, part):
            value = value[part]
        elif not (isinstance(value, dict) and i == len(loc) - 1):
            continue
        path.append(str(part))
    return ".".join(path)


def _has(value: Any, part: int | str) -> bool:
    if isinstance(value, list):
        return isinstance(part, int) and 0 <= part < len(value)
    return isinstance(value, dict) and part in value
