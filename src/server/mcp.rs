//! `pareil mcp`: a Model Context Protocol server on stdio (the official Rust
//! SDK, `rmcp`), so AI agents can look things up in a pareil store. Tools:
//! `similar`, `check_duplicate`, `ingest_text`, `stats`, each a thin call
//! of the [`Engine`] (the same request shapes as the HTTP API), answering
//! with the same JSON as the CLI's `--json`. stdout belongs to the protocol;
//! logs go to stderr.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    InitializeResult, JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities,
    ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData, ServerHandler, ServiceExt};
use serde_json::{json, Value};

use crate::dedup::Thresholds;
use crate::engine::{
    CheckRequest, Engine, IngestOptions, Input, ModelSpec, NoProgress, OnDuplicate, SimilarOptions,
    SimilarRequest,
};
use crate::error::{Error, Result};

/// Serves the store at `db` (created when missing) over stdio until the
/// client closes it.
pub fn serve_mcp(db: &Path, model: ModelSpec) -> Result<()> {
    let (engine, _) = super::open_writer(db, &model)?;
    let handler = Pareil {
        engine: Arc::new(Mutex::new(engine)),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Usage(format!("cannot start the MCP runtime: {e}")))?;
    runtime.block_on(async move {
        let service = handler
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|e| Error::Usage(format!("MCP initialisation failed: {e}")))?;
        service
            .waiting()
            .await
            .map_err(|e| Error::Usage(format!("MCP server stopped: {e}")))?;
        Ok(())
    })
}

struct Pareil {
    engine: Arc<Mutex<Engine>>,
}

fn schema(v: Value) -> Arc<JsonObject> {
    match v {
        Value::Object(o) => Arc::new(o),
        _ => unreachable!("tool schemas are objects"),
    }
}

fn tools() -> Vec<Tool> {
    vec![
        Tool::new(
            "similar",
            "Stored passages most similar to a text, a stored passage id, or a place \
             \"path:line\". Returns ranked passages with path, lines, score and text.",
            schema(json!({
                "type": "object",
                "properties": {
                    "text": {"type": "string", "description": "what to look for"},
                    "id": {"type": "integer", "description": "a stored passage id"},
                    "at": {"type": "string", "description": "path:line of a stored passage"},
                    "k": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10},
                    "min_score": {"type": "number"},
                    "doc": {"type": "string", "description": "glob on document paths"}
                }
            })),
        ),
        Tool::new(
            "check_duplicate",
            "Is this text already stored? For each text: duplicate or not, and the stored \
             copies with kind (exact, near, contained, semantic), score, place and why. \
             Writes nothing.",
            schema(json!({
                "type": "object",
                "properties": {
                    "text": {"type": "string"},
                    "texts": {"type": "array", "items": {"type": "string"}}
                }
            })),
        ),
        Tool::new(
            "ingest_text",
            "Store a text under a name (a path-like label); duplicates are reported, or \
             skipped / refused with on_duplicate.",
            schema(json!({
                "type": "object",
                "required": ["name", "text"],
                "properties": {
                    "name": {"type": "string"},
                    "text": {"type": "string"},
                    "on_duplicate": {"enum": ["report", "skip", "fail"], "default": "report"}
                }
            })),
        ),
        Tool::new(
            "stats",
            "What the store holds: documents, passages, model.",
            schema(json!({"type": "object", "properties": {}})),
        ),
    ]
}

/// A tool call's answer as JSON, or the error it met.
fn run_tool(engine: &mut Engine, name: &str, args: Value) -> Result<Value> {
    let bad = |e: serde_json::Error| Error::Usage(format!("{name}: bad arguments: {e}"));
    match name {
        "similar" => {
            let request: SimilarRequest = serde_json::from_value(args).map_err(bad)?;
            let (query, opts) = request.resolve(&SimilarOptions::default())?;
            Ok(serde_json::to_value(engine.similar(&query, &opts)?)?)
        }
        "check_duplicate" => {
            let request: CheckRequest = serde_json::from_value(args).map_err(bad)?;
            let results = engine.check(&request.into_texts()?, &Thresholds::default())?;
            Ok(json!({ "results": results }))
        }
        "ingest_text" => {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Args {
                name: String,
                text: String,
                #[serde(default)]
                on_duplicate: Option<String>,
            }
            let a: Args = serde_json::from_value(args).map_err(bad)?;
            let on_duplicate = match a.on_duplicate.as_deref().unwrap_or("report") {
                "report" => OnDuplicate::Report,
                "skip" => OnDuplicate::Skip,
                "fail" => OnDuplicate::Fail,
                other => {
                    return Err(Error::Usage(format!(
                        "on_duplicate is report, skip or fail, not {other:?}"
                    )))
                }
            };
            let input = Input::Reader {
                name: a.name,
                reader: Box::new(std::io::Cursor::new(a.text.into_bytes())),
            };
            let opts = IngestOptions {
                on_duplicate,
                ..IngestOptions::default()
            };
            let report = engine.ingest(vec![input], &opts, &mut NoProgress)?;
            Ok(serde_json::to_value(report)?)
        }
        "stats" => Ok(serde_json::to_value(engine.stats()?)?),
        other => Err(Error::NotFound(format!("tool {other:?}"))),
    }
}

impl ServerHandler for Pareil {
    fn get_info(&self) -> ServerConfig {
        let mut info = InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
            .with_instructions(
                "pareil: local semantic similarity and duplicate detection over a store of \
                     passages (paragraphs with file and line). Use `similar` to find related \
                     passages, `check_duplicate` before storing or publishing a text, \
                     `ingest_text` to store one.",
            );
        info.server_info = Implementation::new("pareil", env!("CARGO_PKG_VERSION"));
        info
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> std::result::Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> std::result::Result<CallToolResponse, ErrorData> {
        let name = request.name.to_string();
        if !tools().iter().any(|t| t.name == name) {
            return Err(ErrorData::invalid_params(
                format!("unknown tool {name:?}"),
                None,
            ));
        }
        let args = Value::Object(request.arguments.unwrap_or_default());
        let engine = self.engine.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let mut engine = engine
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            run_tool(&mut engine, &name, args)
        })
        .await
        .map_err(|e| ErrorData::internal_error(format!("tool failed: {e}"), None))?;
        // Errors a caller can act on are tool results marked as errors, so
        // the agent sees the message (the protocol's own errors are for
        // malformed calls).
        let result = match outcome {
            Ok(v) => CallToolResult::success(vec![ContentBlock::text(
                serde_json::to_string_pretty(&v).unwrap_or_default(),
            )]),
            Err(e) => CallToolResult::error(vec![ContentBlock::text(e.to_string())]),
        };
        Ok(CallToolResponse::Complete(result))
    }
}
