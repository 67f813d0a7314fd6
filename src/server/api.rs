//! The HTTP API: routes, request and response bodies, and the one error
//! shape every refusal uses (`{"error": {"message", "type", "code"}}`, as
//! OpenAI's API does, so its clients show our messages).
//!
//! Requests are strict: unknown fields, wrong types and malformed JSON are
//! 400/422 with the reason; the OpenAI-compatible `/v1/embeddings` also
//! accepts the fields OpenAI clients send (`user`, `dimensions`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path as UrlPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::{openapi, Shared};
use crate::dedup::Thresholds;
use crate::engine::{
    CheckRequest, IngestOptions, Input, NoProgress, OnDuplicate, SimilarOptions, SimilarRequest,
};
use crate::error::Error;
use crate::model::Role;

pub(super) fn router(shared: Arc<Shared>) -> Router {
    let limit = shared.opts.body_limit;
    Router::new()
        .route("/health", get(health))
        .route("/openapi.json", get(openapi_document))
        .route("/metrics", get(metrics))
        .route("/v1/stats", get(stats))
        .route("/v1/similar", post(similar))
        .route("/v1/check", post(check))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/documents", post(add_document))
        .route("/v1/documents/{*name}", delete(remove_document))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method (see /openapi.json)",
            )
        })
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(shared.clone(), guard))
        .with_state(shared)
}

/// Token check and metrics around every request.
async fn guard(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let route = route_label(request.uri().path());
    let started = Instant::now();
    let response = match &shared.opts.token {
        Some(token) if route != "/health" && !bearer_matches(&request, token) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token (send `Authorization: Bearer TOKEN`)",
        )
        .into_response(),
        _ if matches!(route, "/health" | "/metrics") => next.run(request).await,
        _ => admitted(&shared, request, next).await,
    };
    shared
        .metrics
        .record(route, response.status().as_u16(), started.elapsed());
    response
}

/// Runs a request if there is room (else 503 with `Retry-After`), under
/// the request timeout (else 504). Admission covers the whole request,
/// reading its body included, so slow senders count against the limit.
async fn admitted(shared: &Shared, request: Request, next: Next) -> Response {
    let permit = match shared.admit() {
        Ok(p) => p,
        Err(busy) => return busy.into_response(),
    };
    let timeout = shared.opts.timeout;
    let response = match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::timeout(timeout).into_response(),
    };
    drop(permit);
    response
}

/// The route a path belongs to, for metrics (names are not labels).
fn route_label(path: &str) -> &'static str {
    match path {
        "/health" => "/health",
        "/openapi.json" => "/openapi.json",
        "/metrics" => "/metrics",
        "/v1/stats" => "/v1/stats",
        "/v1/similar" => "/v1/similar",
        "/v1/check" => "/v1/check",
        "/v1/embeddings" => "/v1/embeddings",
        "/v1/documents" => "/v1/documents",
        p if p.starts_with("/v1/documents/") => "/v1/documents/{name}",
        _ => "other",
    }
}

/// Compares in time independent of where the first difference is.
fn bearer_matches(request: &Request, token: &str) -> bool {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// A refusal or failure, as JSON.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub(super) fn busy() -> Self {
        ApiError {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "too many requests in flight; retry shortly",
            )
        }
    }

    pub(super) fn timeout(after: Duration) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!(
                "the request took longer than {} s (--timeout); it may still complete",
                after.as_secs_f64()
            ),
        )
    }

    pub(super) fn internal(message: String) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let (status, code) = match &e {
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Error::Usage(_) | Error::InvalidUtf8 { .. } | Error::Binary { .. } => {
                (StatusCode::BAD_REQUEST, "invalid_request")
            }
            Error::DuplicatesRefused { .. } => (StatusCode::CONFLICT, "duplicates"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {
            "message": self.message,
            "type": self.code,
            "code": self.status.as_u16(),
        }});
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// A JSON body whose rejections are [`ApiError`]s.
pub(super) struct Body<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    let status = r.status();
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        _ => "invalid_json",
    };
    ApiError::new(status, code, r.body_text())
}

type Reply<T> = Result<axum::Json<T>, ApiError>;

async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

async fn openapi_document() -> axum::Json<serde_json::Value> {
    axum::Json(openapi::document())
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let in_flight = shared.opts.queue - shared.admitted.available_permits();
    let text = shared.metrics.render(in_flight);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn stats(State(shared): State<Arc<Shared>>) -> Reply<crate::store::Stats> {
    let stats = shared.read(|engine| engine.stats()).await?;
    Ok(axum::Json(stats))
}

async fn similar(
    State(shared): State<Arc<Shared>>,
    Body(req): Body<SimilarRequest>,
) -> Reply<crate::engine::SimilarResults> {
    let (query, opts) = req.resolve(&SimilarOptions::default())?;
    let found = shared
        .read(move |engine| engine.similar(&query, &opts))
        .await?;
    Ok(axum::Json(found))
}

#[derive(Serialize)]
pub(super) struct CheckReply {
    results: Vec<crate::engine::CheckResult>,
}

async fn check(
    State(shared): State<Arc<Shared>>,
    Body(req): Body<CheckRequest>,
) -> Reply<CheckReply> {
    let texts = req.into_texts()?;
    let results = shared
        .read(move |engine| engine.check(&texts, &Thresholds::default()))
        .await?;
    Ok(axum::Json(CheckReply { results }))
}

/// `POST /v1/embeddings`, as OpenAI's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EmbeddingsRequest {
    input: EmbeddingInput,
    model: String,
    #[serde(default)]
    encoding_format: EncodingFormat,
    dimensions: Option<usize>,
    #[allow(dead_code)]
    user: Option<String>,
    /// pareil's extension: `query` (default: e5's prompt for searching and
    /// for symmetric comparison) or `passage` (texts to be searched).
    #[serde(default)]
    input_type: InputType,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
    Tokens(#[allow(dead_code)] Vec<serde::de::IgnoredAny>),
}

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum EncodingFormat {
    #[default]
    Float,
    Base64,
}

#[derive(Debug, Default, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum InputType {
    #[default]
    Query,
    Passage,
}

/// Inputs per request: OpenAI's own limit.
const MAX_EMBEDDING_INPUTS: usize = 2048;

#[derive(Serialize)]
pub(super) struct EmbeddingsResponse {
    object: &'static str,
    data: Vec<EmbeddingData>,
    model: String,
    usage: Usage,
}

#[derive(Serialize)]
struct EmbeddingData {
    object: &'static str,
    index: usize,
    embedding: serde_json::Value,
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: usize,
    total_tokens: usize,
}

impl EmbeddingsRequest {
    fn texts(self) -> Result<Vec<String>, ApiError> {
        let texts = match self.input {
            EmbeddingInput::One(t) => vec![t],
            EmbeddingInput::Many(ts) => ts,
            EmbeddingInput::Tokens(_) => {
                return Err(ApiError::bad_request(
                    "`input` must be a string or an array of strings (token ids are not \
                     accepted: this model has its own tokenizer)",
                ))
            }
        };
        if texts.is_empty() || texts.len() > MAX_EMBEDDING_INPUTS {
            return Err(ApiError::bad_request(format!(
                "`input` must hold 1 to {MAX_EMBEDDING_INPUTS} texts, got {}",
                texts.len()
            )));
        }
        if let Some(i) = texts.iter().position(|t| t.is_empty()) {
            return Err(ApiError::bad_request(format!("`input[{i}]` is empty")));
        }
        Ok(texts)
    }
}

/// Whether `asked` names the served model (its id, or the id's last part).
fn names_model(asked: &str, id: &str) -> bool {
    asked == id || id.rsplit('/').next() == Some(asked)
}

async fn embeddings(
    State(shared): State<Arc<Shared>>,
    Body(req): Body<EmbeddingsRequest>,
) -> Reply<EmbeddingsResponse> {
    let id = shared.model.model_id();
    if !names_model(&req.model, &id) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!(
                "model {:?} is not served here; this server serves {id:?}",
                req.model
            ),
        ));
    }
    let dim = shared.model.dim();
    if req.dimensions.is_some_and(|d| d != dim) {
        return Err(ApiError::bad_request(format!(
            "`dimensions` must be {dim} for this model (it has no shortened vectors)"
        )));
    }
    let (format, role) = (req.encoding_format, req.input_type);
    let texts = req.texts()?;
    let role = match role {
        InputType::Query => Role::Query,
        InputType::Passage => Role::Passage,
    };
    let embedded = shared
        .compute(move |model| {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            model.embed(&refs, role)
        })
        .await?;
    let tokens = embedded.iter().map(|e| e.tokens).sum();
    let data = embedded
        .into_iter()
        .enumerate()
        .map(|(index, e)| EmbeddingData {
            object: "embedding",
            index,
            embedding: encode_vector(&e.vector, format),
        })
        .collect();
    Ok(axum::Json(EmbeddingsResponse {
        object: "list",
        data,
        model: id,
        usage: Usage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    }))
}

/// A vector as JSON floats, or as OpenAI's base64 of little-endian f32s.
fn encode_vector(v: &[f32], format: EncodingFormat) -> serde_json::Value {
    match format {
        EncodingFormat::Float => serde_json::json!(v),
        EncodingFormat::Base64 => {
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
    }
}

/// `POST /v1/documents`: a text with a name, or a server-side path under
/// an `--allow-dir`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DocumentRequest {
    name: Option<String>,
    text: Option<String>,
    path: Option<PathBuf>,
    #[serde(default)]
    on_duplicate: OnDuplicateField,
}

#[derive(Debug, Default, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum OnDuplicateField {
    #[default]
    Report,
    Skip,
    Fail,
}

impl DocumentRequest {
    fn input(self, allow_dirs: &[PathBuf]) -> Result<Input, ApiError> {
        match (self.name, self.text, self.path) {
            (Some(name), Some(text), None) => {
                if name.trim().is_empty() {
                    return Err(ApiError::bad_request("`name` is empty"));
                }
                Ok(Input::Reader {
                    name,
                    reader: Box::new(std::io::Cursor::new(text.into_bytes())),
                })
            }
            (None, None, Some(path)) => Ok(Input::Path(allowed_path(&path, allow_dirs)?)),
            _ => Err(ApiError::bad_request(
                "give `name` and `text`, or `path` (a server-side file under --allow-dir)",
            )),
        }
    }
}

/// `path` itself when it lies under one of the allowed directories (after
/// resolving `..` and links), else a 403.
fn allowed_path(path: &std::path::Path, allow_dirs: &[PathBuf]) -> Result<PathBuf, ApiError> {
    let forbidden = |why: String| ApiError::new(StatusCode::FORBIDDEN, "forbidden_path", why);
    if allow_dirs.is_empty() {
        return Err(forbidden(
            "server-side paths are off; start the server with --allow-dir DIR".into(),
        ));
    }
    let real = path
        .canonicalize()
        .map_err(|e| ApiError::bad_request(format!("{}: {e}", path.display())))?;
    if allow_dirs.iter().any(|d| real.starts_with(d)) {
        Ok(real)
    } else {
        Err(forbidden(format!(
            "{} is not under an --allow-dir directory",
            path.display()
        )))
    }
}

#[derive(Serialize)]
pub(super) struct DocumentReply {
    report: crate::engine::IngestReport,
}

async fn add_document(
    State(shared): State<Arc<Shared>>,
    Body(req): Body<DocumentRequest>,
) -> Result<Response, ApiError> {
    let on_duplicate = match req.on_duplicate {
        OnDuplicateField::Report => OnDuplicate::Report,
        OnDuplicateField::Skip => OnDuplicate::Skip,
        OnDuplicateField::Fail => OnDuplicate::Fail,
    };
    let input = req.input(&shared.allow_dirs)?;
    let opts = IngestOptions {
        on_duplicate,
        thresholds: Thresholds::default(),
        ..IngestOptions::default()
    };
    let report = shared
        .write(move |engine| engine.ingest(vec![input], &opts, &mut NoProgress))
        .await?;
    // A document refused for its duplicates (on_duplicate = fail) is a
    // conflict: nothing was written, and the report says why.
    let status = if report.refused.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::CONFLICT
    };
    Ok((status, axum::Json(DocumentReply { report })).into_response())
}

async fn remove_document(
    State(shared): State<Arc<Shared>>,
    UrlPath(name): UrlPath<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let removed = shared.write(move |engine| engine.remove(&[name])).await?;
    Ok(axum::Json(serde_json::json!({ "removed": removed })))
}
