"""Clear answers for the OpenAI endpoints this agent does not serve.

Several clients default to another endpoint than chat completions: the Agents SDK and the AI SDK's
`openai(model)` call `/responses`, LlamaIndex's `OpenAILike` calls `/completions` unless told the model is a
chat model. A bare 404 leaves their users guessing; this one names the endpoint to use and each client's
switch.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from server.errors import ApiError

UNSERVED_PATHS = ("/openai/v1/responses", "/openai/v1/completions")

SWITCHES = ("openai-python / openai npm: `client.chat.completions.create(...)`; "
            "Vercel AI SDK: `openai.chat(model)`; "
            "OpenAI Agents SDK: `OpenAIChatCompletionsModel` "
            "(or `set_default_openai_api(\"chat_completions\")`); "
            "LlamaIndex `OpenAILike`: `is_chat_model=True`; "
            "LangChain `ChatOpenAI`: `use_responses_api=False`.")


def unserved_endpoint(path: str) -> ApiError:
    endpoint = path.removeprefix("/openai/v1")
    return ApiError(404, f"This agent does not serve `{endpoint}`: it speaks the Chat Completions API, "
                    f"POST /openai/v1/chat/completions. {SWITCHES}", "invalid_request_error",
                    "endpoint_not_supported")


async def answer_unserved(request: Request) -> Response:
    """The route of every path in `UNSERVED_PATHS` (any method)."""
    raise unserved_endpoint(request.url.path)
