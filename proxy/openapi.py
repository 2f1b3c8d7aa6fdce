"""The OpenAPI document the proxy serves at /openapi.json (also what the schema-driven fuzz reads)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from proxy.protocol import ChatCompletionRequest, CompletionRequest

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["message", "type", "param", "code"], "properties": {
        "message": {"type": "string"}, "type": {"type": "string"},
        "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}},
}


#: one server-sent event of a streamed answer (Open API 3.1: a text/event-stream `schema` describes each event)
_STREAM_EVENT = {
    "type": "object",
    "required": ["data"],
    "properties": {"data": {"type": "string", "description": "a chunk object as JSON, an error object, or [DONE]"},
                   "event": {"type": "string"}, "id": {"type": "string"}, "retry": {"type": "integer"}},
}


def _error_responses(*statuses: int) -> dict[str, Any]:
    return {str(s): {"description": "OpenAI-shaped error",
                     "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            for s in statuses}


def _generation(schema_name: str, summary: str) -> dict[str, Any]:
    return {"post": {
        "summary": summary,
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{schema_name}"}}}},
        "responses": {
            "200": {"description": "The upstream's answer (JSON, or text/event-stream when stream is true)",
                    "content": {"application/json": {"schema": {"type": "object"}},
                                "text/event-stream": {"schema": {"$ref": "#/components/schemas/StreamEvent"}}}},
            **_error_responses(400, 401, 408, 413, 502, 503, 504),
        },
    }}


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    chat = ChatCompletionRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    completion = CompletionRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = {"Error": _ERROR, "StreamEvent": _STREAM_EVENT}
    for schema in (chat, completion):
        schemas.update(schema.pop("$defs", {}))
    schemas["ChatCompletionRequest"] = chat
    schemas["CompletionRequest"] = completion
    simple = {"get": {"responses": {"200": {"description": "OK"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "guardstream", "version": "1", "description": "Guardrail proxy for OpenAI-compatible APIs"},
        "paths": {
            "/v1/chat/completions": _generation("ChatCompletionRequest", "Guarded chat completion"),
            "/v1/completions": _generation("CompletionRequest", "Guarded legacy completion"),
            "/v1/models": {"get": {"responses": {"200": {"description": "The upstream's model list"},
                                                 **_error_responses(401, 502, 503, 504)}}},
            "/healthz": simple,
            "/readyz": simple,
        },
        "components": {"schemas": schemas, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
    }
