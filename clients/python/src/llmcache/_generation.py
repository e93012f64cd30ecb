"""What the cache holds: generations as plain data, LangChain's shape."""

from __future__ import annotations

from typing import Any, NotRequired, TypeAlias, TypedDict

ChatMessage: TypeAlias = dict[str, Any]
"""A LangChain message as plain data: what Python's `message.model_dump()` gives.

Keys, named as LangChain names them: `type` ("ai", "human", "system",
"tool", "function", "chat", "AIMessageChunk", ...) and `content` (a str or a
list of content blocks) always; `additional_kwargs`, `response_metadata`,
`tool_calls`, `invalid_tool_calls`, `tool_call_chunks`, `usage_metadata`,
`id`, `name`, `tool_call_id`, `role`, `status`, `artifact` when the message
has them; and any other field the message carried, as it was.

What a lookup gives back leaves out the optional fields that were None
(`id`, `name`, `tool_call_id`, `role`, `status`, and a tool call's `id` or
`type`), as JSON and the TypeScript client do, and an empty tool-call list
except the ones LangChain always gives the type: `tool_calls` and
`invalid_tool_calls` of an "ai" message, and those and `tool_call_chunks`
of an "AIMessageChunk". Token counts are ints.
"""


class Generation(TypedDict):
    """One output of a model: LangChain's Generation, or ChatGeneration.

    `generation_info` (provider details such as finish_reason, as JSON) and
    `message` (a chat model's message, see ChatMessage) are present only when
    the generation has them.
    """

    text: str
    generation_info: NotRequired[dict[str, Any]]
    message: NotRequired[ChatMessage]
