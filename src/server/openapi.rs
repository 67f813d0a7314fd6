//! The OpenAPI 3.1 description served at `/openapi.json`: what a client
//! generator or a person needs to call the API. Written by hand next to the
//! handlers it describes (`api.rs`); a test checks every route is in it.

use serde_json::{json, Value};

fn body(schema: Value) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema}}})
}

fn answers(ok: &str) -> Value {
    json!({
        "200": {"description": ok, "content": {"application/json": {}}},
        "4XX": {"$ref": "#/components/responses/Error"},
        "503": {"$ref": "#/components/responses/Error"},
    })
}

pub(super) fn document() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "pareil",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Local semantic similarity and duplicate detection. Every error is \
                {\"error\": {\"message\", \"type\", \"code\"}}. With --token, every route but \
                /health wants `Authorization: Bearer TOKEN`."
        },
        "paths": {
            "/health": {"get": {"summary": "Liveness", "responses": answers("{\"status\": \"ok\"}")}},
            "/metrics": {"get": {"summary": "Prometheus text format", "responses": answers("metrics")}},
            "/openapi.json": {"get": {"summary": "This document", "responses": answers("OpenAPI")}},
            "/v1/stats": {"get": {"summary": "What the store holds (as `pareil stats --json`'s `stats`)", "responses": answers("stats")}},
            "/v1/similar": {"post": {
                "summary": "Stored passages most similar to a text, a stored passage (`id`) or `path:line` (`at`); the schema of `pareil similar --json`",
                "requestBody": body(json!({
                    "type": "object", "additionalProperties": false,
                    "properties": {
                        "text": {"type": "string"}, "id": {"type": "integer"},
                        "at": {"type": "string", "description": "path:line"},
                        "k": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10},
                        "min_score": {"type": "number", "minimum": -1, "maximum": 1},
                        "exclude_same_doc": {"type": "boolean", "default": false},
                        "doc": {"type": "string", "description": "glob on document paths"},
                        "collapse": {"type": "boolean", "default": true}
                    },
                    "oneOf": [{"required": ["text"]}, {"required": ["id"]}, {"required": ["at"]}]
                })),
                "responses": answers("{\"query\": …, \"results\": […]}")
            }},
            "/v1/check": {"post": {
                "summary": "Is each text already stored? Nothing is written. Each text is judged as one passage against its 16 nearest stored passages by the rule of `pareil dups`",
                "requestBody": body(json!({
                    "type": "object", "additionalProperties": false,
                    "properties": {
                        "text": {"type": "string"},
                        "texts": {"type": "array", "items": {"type": "string"}, "maxItems": 256}
                    },
                    "oneOf": [{"required": ["text"]}, {"required": ["texts"]}]
                })),
                "responses": answers("{\"results\": [{\"duplicate\", \"matches\": [{\"kind\", \"score\", \"canonical\": {\"id\", \"path\", \"line_start\", \"line_end\"}, \"text\", \"explanation\"}]}]}")
            }},
            "/v1/embeddings": {"post": {
                "summary": "OpenAI-compatible embeddings",
                "requestBody": body(json!({
                    "type": "object", "required": ["input", "model"],
                    "properties": {
                        "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": 2048}]},
                        "model": {"type": "string", "description": "the served model's id, or its last part"},
                        "encoding_format": {"enum": ["float", "base64"], "default": "float"},
                        "dimensions": {"type": "integer", "description": "must equal the model's"},
                        "user": {"type": "string"},
                        "input_type": {"enum": ["query", "passage"], "default": "query",
                            "description": "pareil extension: e5's prompt (query for searching and symmetric comparison, passage for texts to be searched)"}
                    }
                })),
                "responses": answers("{\"object\": \"list\", \"data\": [{\"object\": \"embedding\", \"index\", \"embedding\"}], \"model\", \"usage\"}")
            }},
            "/v1/documents": {"post": {
                "summary": "Ingest a text under a name, or a server-side file under --allow-dir; 409 when on_duplicate = fail refused it",
                "requestBody": body(json!({
                    "type": "object", "additionalProperties": false,
                    "properties": {
                        "name": {"type": "string"}, "text": {"type": "string"},
                        "path": {"type": "string"},
                        "on_duplicate": {"enum": ["report", "skip", "fail"], "default": "report"}
                    }
                })),
                "responses": answers("{\"report\": …} as `pareil ingest --json`")
            }},
            "/v1/documents/{name}": {"delete": {
                "summary": "Remove a stored document (its path, or a unique suffix of one)",
                "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": answers("{\"removed\": [paths]}")
            }}
        },
        "components": {"responses": {"Error": {
            "description": "what is wrong",
            "content": {"application/json": {"schema": {
                "type": "object",
                "properties": {"error": {"type": "object", "properties": {
                    "message": {"type": "string"}, "type": {"type": "string"}, "code": {"type": "integer"}
                }}}
            }}}
        }}}
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_route_is_described() {
        let doc = super::document();
        let source = include_str!("api.rs");
        for line in source.lines().filter(|l| l.contains(".route(\"")) {
            let route = line.split('"').nth(1).unwrap().replace("{*name}", "{name}");
            assert!(doc["paths"].get(&route).is_some(), "{route} missing");
        }
    }
}
