//! The HTTP side: routes, bearer-token auth, body limits, and turning a job's events into a JSON response or an SSE
//! stream. Nothing here blocks: inference happens on the model thread.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use super::openai::{
    ApiError, ChatRequest, CompletionRequest, Endpoint, Generate, Identity, InfillRequest, Usage, parse_job,
};
use super::worker::{Event, Job, ModelInfo, Prompt};

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    /// The model thread's queue.
    pub jobs: mpsc::Sender<Job>,
    /// The model's name, as `/v1/models` lists it.
    pub model_id: String,
    /// What the model thread reported.
    pub info: ModelInfo,
    /// The bearer token clients must send, if any.
    pub api_key: Option<String>,
    /// Largest request body accepted, in bytes.
    pub max_body: usize,
    /// Numbers response ids.
    pub requests: AtomicU64,
    /// Unix time the server started (`created` of the model).
    pub started: u64,
}

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The server's routes.
pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        // Clients configured with a base URL that lacks `/v1` (llama.cpp's server accepts these too).
        .route("/models", get(models))
        .route("/chat/completions", post(chat))
        .route("/completions", post(completions))
        .route("/infill", post(infill))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key));
    Router::new()
        .route("/health", get(health))
        .merge(api)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(state.max_body))
        .with_state(state)
}

async fn health() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn not_found(request: Request) -> Response {
    let message = format!("no route for {} {}", request.method(), request.uri().path());
    ApiError::with_status(StatusCode::NOT_FOUND, "invalid_request_error", message).into_response()
}

/// Rejects requests without `Authorization: Bearer <key>` when the server has a key.
async fn require_key(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let Some(key) = &state.api_key else {
        return next.run(request).await;
    };
    let sent = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Compare in time independent of where the first difference is.
    let matches = sent.is_some_and(|sent| {
        sent.len() == key.len() && sent.bytes().zip(key.bytes()).fold(0, |acc, (a, b)| acc | (a ^ b)) == 0
    });
    if matches {
        next.run(request).await
    } else {
        let message = if sent.is_some() {
            "the API key is not valid"
        } else {
            "an API key is required: send `Authorization: Bearer <key>`"
        };
        ApiError::with_status(StatusCode::UNAUTHORIZED, "authentication_error", message).into_response()
    }
}

async fn models(State(state): State<Arc<AppState>>) -> Response {
    axum::Json(json!({
        "object": "list",
        "data": [{
            "id": state.model_id,
            "object": "model",
            "created": state.started,
            "owned_by": "hearth",
            "meta": {"n_ctx": state.info.context, "fim": state.info.fim},
        }],
    }))
    .into_response()
}

/// The body, or the error a client should see when it is too large or unreadable.
fn body_bytes(body: Result<Bytes, BytesRejection>, max_body: usize) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        let status = rejection.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("the request body is larger than this server's limit of {max_body} bytes (--max-body)")
        } else {
            format!("cannot read the request body: {}", rejection.body_text())
        };
        ApiError::with_status(status, "invalid_request_error", message)
    })
}

async fn chat(State(state): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Response {
    let job = body_bytes(body, state.max_body).and_then(|b| parse_job::<ChatRequest>(&b));
    respond(state, Endpoint::Chat, "POST /v1/chat/completions", job).await
}

async fn completions(State(state): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Response {
    let job = body_bytes(body, state.max_body).and_then(|b| parse_job::<CompletionRequest>(&b));
    respond(state, Endpoint::Completion, "POST /v1/completions", job).await
}

async fn infill(State(state): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Response {
    let job = body_bytes(body, state.max_body).and_then(|b| parse_job::<InfillRequest>(&b));
    respond(state, Endpoint::Infill, "POST /infill", job).await
}

/// Queues the job and answers with its result: a JSON body, or an SSE stream. Errors found before generation starts
/// (bad input, context overflow) are plain HTTP errors even for streaming requests.
async fn respond(
    state: Arc<AppState>,
    endpoint: Endpoint,
    label: &'static str,
    job: Result<(Prompt, Generate), ApiError>,
) -> Response {
    let (prompt, generate) = match job {
        Ok(job) => job,
        Err(e) => return e.into_response(),
    };
    let (events, mut progress) = unbounded_channel();
    let job = Job {
        prompt,
        sampling: generate.sampling,
        max_tokens: generate.max_tokens,
        stop: generate.stop,
        events,
        label,
    };
    if state.jobs.send(job).is_err() {
        return ApiError::internal("the model thread has stopped").into_response();
    }
    let who = Identity {
        id: format!(
            "{}-{:x}{:06x}",
            endpoint.id_prefix(),
            state.started,
            state.requests.fetch_add(1, Ordering::Relaxed)
        ),
        created: unix_now(),
        model: state.model_id.clone(),
    };
    let usage = match progress.recv().await {
        Some(Event::Started {
            prompt_tokens,
            cached_tokens,
        }) => Usage {
            prompt: prompt_tokens,
            cached: cached_tokens,
            completion: 0,
        },
        Some(Event::Failed(e)) => return e.into_response(),
        _ => return ApiError::internal("the model thread dropped the request").into_response(),
    };
    if generate.stream {
        stream_response(endpoint, who, usage, generate.include_usage, progress)
    } else {
        whole_response(endpoint, who, usage, progress).await
    }
}

async fn whole_response(
    endpoint: Endpoint,
    who: Identity,
    mut usage: Usage,
    mut progress: UnboundedReceiver<Event>,
) -> Response {
    let mut text = String::new();
    loop {
        match progress.recv().await {
            Some(Event::Text(piece)) => text.push_str(&piece),
            Some(Event::Finished {
                completion_tokens,
                finish,
            }) => {
                usage.completion = completion_tokens;
                return axum::Json(endpoint.response(&who, &text, finish, usage)).into_response();
            }
            Some(Event::Failed(e)) => return e.into_response(),
            Some(Event::Started { .. }) | None => {
                return ApiError::internal("the model thread dropped the request").into_response();
            }
        }
    }
}

/// Server-sent events, `data: {json}\n\n` each, closed by `data: [DONE]` where the format has it. A client that goes
/// away drops the stream, and with it the receiver: the model thread sees that and stops generating.
fn stream_response(
    endpoint: Endpoint,
    who: Identity,
    usage: Usage,
    include_usage: bool,
    progress: UnboundedReceiver<Event>,
) -> Response {
    let data = |value: &Value| SseEvent::default().data(value.to_string());
    let head: Vec<SseEvent> = endpoint.stream_head(&who).iter().map(data).collect();
    let body = stream::unfold(Some((progress, usage)), move |state| {
        let who = who.clone();
        async move {
            let (mut progress, mut usage) = state?;
            let (events, next) = match progress.recv().await {
                Some(Event::Text(piece)) => (vec![data(&endpoint.stream_text(&who, &piece))], true),
                Some(Event::Finished {
                    completion_tokens,
                    finish,
                }) => {
                    usage.completion = completion_tokens;
                    let mut tail: Vec<SseEvent> = endpoint
                        .stream_tail(&who, finish, usage, include_usage)
                        .iter()
                        .map(data)
                        .collect();
                    if endpoint.ends_with_done() {
                        tail.push(SseEvent::default().data("[DONE]"));
                    }
                    (tail, false)
                }
                Some(Event::Failed(e)) => (vec![data(&e.body())], false),
                Some(Event::Started { .. }) | None => (
                    vec![data(&ApiError::internal("the model thread dropped the request").body())],
                    false,
                ),
            };
            Some((events, next.then_some((progress, usage))))
        }
    });
    let events = stream::iter(head)
        .chain(body.flat_map(stream::iter))
        .map(Ok::<_, Infallible>);
    Sse::new(events).into_response()
}
