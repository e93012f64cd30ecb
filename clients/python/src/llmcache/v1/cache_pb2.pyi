from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LookupRequest(_message.Message):
    __slots__ = ("prompt", "llm_string", "namespace", "bypass", "lease_ms", "wait_ms")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    LLM_STRING_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    BYPASS_FIELD_NUMBER: _ClassVar[int]
    LEASE_MS_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    llm_string: str
    namespace: str
    bypass: bool
    lease_ms: int
    wait_ms: int
    def __init__(self, prompt: _Optional[str] = ..., llm_string: _Optional[str] = ..., namespace: _Optional[str] = ..., bypass: _Optional[bool] = ..., lease_ms: _Optional[int] = ..., wait_ms: _Optional[int] = ...) -> None: ...

class LookupResponse(_message.Message):
    __slots__ = ("hit", "generations", "lease", "near")
    HIT_FIELD_NUMBER: _ClassVar[int]
    GENERATIONS_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    NEAR_FIELD_NUMBER: _ClassVar[int]
    hit: bool
    generations: _containers.RepeatedCompositeFieldContainer[Generation]
    lease: Lease
    near: NearGrant
    def __init__(self, hit: _Optional[bool] = ..., generations: _Optional[_Iterable[_Union[Generation, _Mapping]]] = ..., lease: _Optional[_Union[Lease, _Mapping]] = ..., near: _Optional[_Union[NearGrant, _Mapping]] = ...) -> None: ...

class NearGrant(_message.Message):
    __slots__ = ("key", "ttl_ms")
    KEY_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    key: str
    ttl_ms: int
    def __init__(self, key: _Optional[str] = ..., ttl_ms: _Optional[int] = ...) -> None: ...

class Lease(_message.Message):
    __slots__ = ("token", "lease_ms")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    LEASE_MS_FIELD_NUMBER: _ClassVar[int]
    token: str
    lease_ms: int
    def __init__(self, token: _Optional[str] = ..., lease_ms: _Optional[int] = ...) -> None: ...

class UpdateRequest(_message.Message):
    __slots__ = ("prompt", "llm_string", "generations", "namespace", "ttl_ms", "never_expires", "no_store", "only_if_absent", "lease_token")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    LLM_STRING_FIELD_NUMBER: _ClassVar[int]
    GENERATIONS_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    NEVER_EXPIRES_FIELD_NUMBER: _ClassVar[int]
    NO_STORE_FIELD_NUMBER: _ClassVar[int]
    ONLY_IF_ABSENT_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    llm_string: str
    generations: _containers.RepeatedCompositeFieldContainer[Generation]
    namespace: str
    ttl_ms: int
    never_expires: bool
    no_store: bool
    only_if_absent: bool
    lease_token: str
    def __init__(self, prompt: _Optional[str] = ..., llm_string: _Optional[str] = ..., generations: _Optional[_Iterable[_Union[Generation, _Mapping]]] = ..., namespace: _Optional[str] = ..., ttl_ms: _Optional[int] = ..., never_expires: _Optional[bool] = ..., no_store: _Optional[bool] = ..., only_if_absent: _Optional[bool] = ..., lease_token: _Optional[str] = ...) -> None: ...

class UpdateResponse(_message.Message):
    __slots__ = ("stored",)
    STORED_FIELD_NUMBER: _ClassVar[int]
    stored: bool
    def __init__(self, stored: _Optional[bool] = ...) -> None: ...

class ReleaseLeaseRequest(_message.Message):
    __slots__ = ("prompt", "llm_string", "namespace", "lease_token")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    LLM_STRING_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    llm_string: str
    namespace: str
    lease_token: str
    def __init__(self, prompt: _Optional[str] = ..., llm_string: _Optional[str] = ..., namespace: _Optional[str] = ..., lease_token: _Optional[str] = ...) -> None: ...

class ReleaseLeaseResponse(_message.Message):
    __slots__ = ("released",)
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    released: bool
    def __init__(self, released: _Optional[bool] = ...) -> None: ...

class ClearRequest(_message.Message):
    __slots__ = ("namespace", "all_namespaces")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    ALL_NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    all_namespaces: bool
    def __init__(self, namespace: _Optional[str] = ..., all_namespaces: _Optional[bool] = ...) -> None: ...

class ClearResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BatchLookupRequest(_message.Message):
    __slots__ = ("lookups",)
    LOOKUPS_FIELD_NUMBER: _ClassVar[int]
    lookups: _containers.RepeatedCompositeFieldContainer[LookupRequest]
    def __init__(self, lookups: _Optional[_Iterable[_Union[LookupRequest, _Mapping]]] = ...) -> None: ...

class BatchLookupResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[LookupResponse]
    def __init__(self, results: _Optional[_Iterable[_Union[LookupResponse, _Mapping]]] = ...) -> None: ...

class BatchUpdateRequest(_message.Message):
    __slots__ = ("updates",)
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    updates: _containers.RepeatedCompositeFieldContainer[UpdateRequest]
    def __init__(self, updates: _Optional[_Iterable[_Union[UpdateRequest, _Mapping]]] = ...) -> None: ...

class BatchUpdateResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StreamRequest(_message.Message):
    __slots__ = ("operations",)
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    operations: _containers.RepeatedCompositeFieldContainer[StreamOperation]
    def __init__(self, operations: _Optional[_Iterable[_Union[StreamOperation, _Mapping]]] = ...) -> None: ...

class StreamOperation(_message.Message):
    __slots__ = ("id", "lookup", "update", "release_lease", "cancel", "watch")
    ID_FIELD_NUMBER: _ClassVar[int]
    LOOKUP_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    RELEASE_LEASE_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    WATCH_FIELD_NUMBER: _ClassVar[int]
    id: int
    lookup: LookupRequest
    update: UpdateRequest
    release_lease: ReleaseLeaseRequest
    cancel: CancelOperation
    watch: WatchChanges
    def __init__(self, id: _Optional[int] = ..., lookup: _Optional[_Union[LookupRequest, _Mapping]] = ..., update: _Optional[_Union[UpdateRequest, _Mapping]] = ..., release_lease: _Optional[_Union[ReleaseLeaseRequest, _Mapping]] = ..., cancel: _Optional[_Union[CancelOperation, _Mapping]] = ..., watch: _Optional[_Union[WatchChanges, _Mapping]] = ...) -> None: ...

class CancelOperation(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchChanges(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Invalidation(_message.Message):
    __slots__ = ("keys", "all")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[str]
    all: bool
    def __init__(self, keys: _Optional[_Iterable[str]] = ..., all: _Optional[bool] = ...) -> None: ...

class StreamResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[StreamResult]
    def __init__(self, results: _Optional[_Iterable[_Union[StreamResult, _Mapping]]] = ...) -> None: ...

class StreamResult(_message.Message):
    __slots__ = ("id", "lookup", "update", "error", "release_lease", "invalidation")
    ID_FIELD_NUMBER: _ClassVar[int]
    LOOKUP_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RELEASE_LEASE_FIELD_NUMBER: _ClassVar[int]
    INVALIDATION_FIELD_NUMBER: _ClassVar[int]
    id: int
    lookup: LookupResponse
    update: UpdateResponse
    error: OperationError
    release_lease: ReleaseLeaseResponse
    invalidation: Invalidation
    def __init__(self, id: _Optional[int] = ..., lookup: _Optional[_Union[LookupResponse, _Mapping]] = ..., update: _Optional[_Union[UpdateResponse, _Mapping]] = ..., error: _Optional[_Union[OperationError, _Mapping]] = ..., release_lease: _Optional[_Union[ReleaseLeaseResponse, _Mapping]] = ..., invalidation: _Optional[_Union[Invalidation, _Mapping]] = ...) -> None: ...

class OperationError(_message.Message):
    __slots__ = ("code", "message", "reason")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    reason: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("total", "namespaces", "namespaces_not_listed")
    class NamespacesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: CacheStats
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[CacheStats, _Mapping]] = ...) -> None: ...
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    NAMESPACES_NOT_LISTED_FIELD_NUMBER: _ClassVar[int]
    total: CacheStats
    namespaces: _containers.MessageMap[str, CacheStats]
    namespaces_not_listed: int
    def __init__(self, total: _Optional[_Union[CacheStats, _Mapping]] = ..., namespaces: _Optional[_Mapping[str, CacheStats]] = ..., namespaces_not_listed: _Optional[int] = ...) -> None: ...

class CacheStats(_message.Message):
    __slots__ = ("entries", "bytes", "hits", "misses", "bypasses", "hit_ratio", "evictions", "expirations", "updates_not_stored", "leases")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    MISSES_FIELD_NUMBER: _ClassVar[int]
    BYPASSES_FIELD_NUMBER: _ClassVar[int]
    HIT_RATIO_FIELD_NUMBER: _ClassVar[int]
    EVICTIONS_FIELD_NUMBER: _ClassVar[int]
    EXPIRATIONS_FIELD_NUMBER: _ClassVar[int]
    UPDATES_NOT_STORED_FIELD_NUMBER: _ClassVar[int]
    LEASES_FIELD_NUMBER: _ClassVar[int]
    entries: int
    bytes: int
    hits: int
    misses: int
    bypasses: int
    hit_ratio: float
    evictions: Evictions
    expirations: int
    updates_not_stored: int
    leases: LeaseStats
    def __init__(self, entries: _Optional[int] = ..., bytes: _Optional[int] = ..., hits: _Optional[int] = ..., misses: _Optional[int] = ..., bypasses: _Optional[int] = ..., hit_ratio: _Optional[float] = ..., evictions: _Optional[_Union[Evictions, _Mapping]] = ..., expirations: _Optional[int] = ..., updates_not_stored: _Optional[int] = ..., leases: _Optional[_Union[LeaseStats, _Mapping]] = ...) -> None: ...

class LeaseStats(_message.Message):
    __slots__ = ("granted", "filled", "waits_served", "waits_timed_out", "expired", "released", "stale_fills_refused")
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    FILLED_FIELD_NUMBER: _ClassVar[int]
    WAITS_SERVED_FIELD_NUMBER: _ClassVar[int]
    WAITS_TIMED_OUT_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_FIELD_NUMBER: _ClassVar[int]
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    STALE_FILLS_REFUSED_FIELD_NUMBER: _ClassVar[int]
    granted: int
    filled: int
    waits_served: int
    waits_timed_out: int
    expired: int
    released: int
    stale_fills_refused: int
    def __init__(self, granted: _Optional[int] = ..., filled: _Optional[int] = ..., waits_served: _Optional[int] = ..., waits_timed_out: _Optional[int] = ..., expired: _Optional[int] = ..., released: _Optional[int] = ..., stale_fills_refused: _Optional[int] = ...) -> None: ...

class Evictions(_message.Message):
    __slots__ = ("size", "bytes", "ttl")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    size: int
    bytes: int
    ttl: int
    def __init__(self, size: _Optional[int] = ..., bytes: _Optional[int] = ..., ttl: _Optional[int] = ...) -> None: ...

class Generation(_message.Message):
    __slots__ = ("text", "generation_info", "message")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    GENERATION_INFO_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    text: str
    generation_info: _struct_pb2.Struct
    message: ChatMessage
    def __init__(self, text: _Optional[str] = ..., generation_info: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., message: _Optional[_Union[ChatMessage, _Mapping]] = ...) -> None: ...

class ChatMessage(_message.Message):
    __slots__ = ("type", "text", "blocks", "additional_kwargs", "response_metadata", "tool_calls", "invalid_tool_calls", "usage_metadata", "id", "name", "tool_call_id", "role", "status", "artifact", "tool_call_chunks", "extra")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    ADDITIONAL_KWARGS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_METADATA_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    INVALID_TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    USAGE_METADATA_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    type: str
    text: str
    blocks: _struct_pb2.ListValue
    additional_kwargs: _struct_pb2.Struct
    response_metadata: _struct_pb2.Struct
    tool_calls: _containers.RepeatedCompositeFieldContainer[ToolCall]
    invalid_tool_calls: _containers.RepeatedCompositeFieldContainer[InvalidToolCall]
    usage_metadata: UsageMetadata
    id: str
    name: str
    tool_call_id: str
    role: str
    status: str
    artifact: _struct_pb2.Value
    tool_call_chunks: _containers.RepeatedCompositeFieldContainer[ToolCallChunk]
    extra: _struct_pb2.Struct
    def __init__(self, type: _Optional[str] = ..., text: _Optional[str] = ..., blocks: _Optional[_Union[_struct_pb2.ListValue, _Mapping]] = ..., additional_kwargs: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., response_metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., tool_calls: _Optional[_Iterable[_Union[ToolCall, _Mapping]]] = ..., invalid_tool_calls: _Optional[_Iterable[_Union[InvalidToolCall, _Mapping]]] = ..., usage_metadata: _Optional[_Union[UsageMetadata, _Mapping]] = ..., id: _Optional[str] = ..., name: _Optional[str] = ..., tool_call_id: _Optional[str] = ..., role: _Optional[str] = ..., status: _Optional[str] = ..., artifact: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., tool_call_chunks: _Optional[_Iterable[_Union[ToolCallChunk, _Mapping]]] = ..., extra: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ToolCall(_message.Message):
    __slots__ = ("name", "args", "id", "type", "extra")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    name: str
    args: _struct_pb2.Struct
    id: str
    type: str
    extra: _struct_pb2.Struct
    def __init__(self, name: _Optional[str] = ..., args: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., id: _Optional[str] = ..., type: _Optional[str] = ..., extra: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class InvalidToolCall(_message.Message):
    __slots__ = ("name", "args", "id", "error", "type", "extra")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    name: str
    args: str
    id: str
    error: str
    type: str
    extra: _struct_pb2.Struct
    def __init__(self, name: _Optional[str] = ..., args: _Optional[str] = ..., id: _Optional[str] = ..., error: _Optional[str] = ..., type: _Optional[str] = ..., extra: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ToolCallChunk(_message.Message):
    __slots__ = ("name", "args", "id", "index", "type", "extra")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    name: str
    args: str
    id: str
    index: int
    type: str
    extra: _struct_pb2.Struct
    def __init__(self, name: _Optional[str] = ..., args: _Optional[str] = ..., id: _Optional[str] = ..., index: _Optional[int] = ..., type: _Optional[str] = ..., extra: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class UsageMetadata(_message.Message):
    __slots__ = ("input_tokens", "output_tokens", "total_tokens", "input_token_details", "output_token_details", "extra")
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKEN_DETAILS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKEN_DETAILS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_token_details: _struct_pb2.Struct
    output_token_details: _struct_pb2.Struct
    extra: _struct_pb2.Struct
    def __init__(self, input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., total_tokens: _Optional[int] = ..., input_token_details: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., output_token_details: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., extra: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...
