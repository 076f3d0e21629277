//! The wire formats: OpenAI's chat-completions and completions requests and responses (and llama.cpp's `/infill`),
//! parsed strictly enough to give clear 400s, loosely enough to accept what real clients send (unknown fields are
//! ignored; `null` means absent).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hearth_runtime::fim::ContextFile;
use hearth_runtime::generate::FinishReason;
use hearth_runtime::sampling::SamplerParams;
use hearth_runtime::template::Message;
use serde::Deserialize;
use serde_json::{Value, json};

use super::worker::Prompt;

/// An error as OpenAI reports it: an HTTP status and `{"error": {"message", "type", "param", "code"}}`.
#[derive(Clone, Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    kind: &'static str,
    param: Option<&'static str>,
    code: Option<&'static str>,
}

impl ApiError {
    /// A request the server cannot serve as asked (400).
    pub fn invalid(message: impl Into<String>, param: Option<&'static str>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param,
            code: None,
        }
    }

    /// The prompt plus the tokens asked for do not fit the context (400, OpenAI's `context_length_exceeded`).
    pub fn context_length(prompt: usize, reserve: usize, capacity: usize) -> Self {
        ApiError {
            code: Some("context_length_exceeded"),
            ..Self::invalid(
                format!(
                    "this model's context is {capacity} tokens, but the request needs {} ({prompt} in the prompt, \
                     {reserve} for the completion); shorten the messages or lower max_tokens",
                    prompt + reserve
                ),
                Some("messages"),
            )
        }
    }

    /// A failure of the server's own (500).
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: None,
        }
    }

    /// Any other status, such as 401, 404 or 413.
    pub fn with_status(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
        }
    }

    /// The status it is sent with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The JSON object, as sent in a response body or in an SSE event after streaming began.
    pub fn body(&self) -> Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

/// Parses a request body, naming the field that has the wrong type.
fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    let mut json = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::invalid(format!("the request body is not valid JSON: {inner}"), None)
        } else if path == "." {
            ApiError::invalid(
                format!("the request body is not the expected JSON object: {inner}"),
                None,
            )
        } else {
            // The path names the field (`temperature`, `messages[2].role`).
            ApiError::invalid(format!("`{path}`: {inner}"), None)
        }
    })?;
    json.end()
        .map_err(|e| ApiError::invalid(format!("the request body is not valid JSON: {e}"), None))?;
    Ok(value)
}

/// A generation request's own fields (the prompt, in its endpoint's shape). The fields all endpoints share are parsed
/// separately, as [`Options`], from the same body: that keeps the path of a field in error messages (serde's
/// `flatten` loses it).
pub trait JobRequest: for<'de> Deserialize<'de> {
    /// The job the request asks for, run with `options`.
    fn into_job(self, options: Options) -> Result<(Prompt, Generate), ApiError>;
}

/// Parses and checks a generation request.
pub fn parse_job<R: JobRequest>(body: &[u8]) -> Result<(Prompt, Generate), ApiError> {
    let request: R = parse(body)?;
    request.into_job(parse(body)?)
}

/// The fields every generation endpoint shares (OpenAI's names, plus llama.cpp's for what OpenAI lacks).
#[derive(Debug, Default, Deserialize)]
pub struct Options {
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    /// llama.cpp's name for max_tokens; -1 means "until the context is full".
    n_predict: Option<i64>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<u32>,
    min_p: Option<f32>,
    repeat_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    presence_penalty: Option<f32>,
    seed: Option<i64>,
    stop: Option<Value>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    n: Option<u64>,
    logprobs: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

/// How to generate, once a request's options are checked.
#[derive(Debug)]
pub struct Generate {
    /// The sampler's settings.
    pub sampling: SamplerParams,
    /// Most tokens to generate; absent means until an end token or a full context.
    pub max_tokens: Option<usize>,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Stream the answer as server-sent events.
    pub stream: bool,
    /// With `stream`, end with a chunk that carries the token usage.
    pub include_usage: bool,
}

fn check_range(value: Option<f32>, name: &'static str, range: std::ops::RangeInclusive<f32>) -> Result<(), ApiError> {
    match value {
        Some(v) if !range.contains(&v) => Err(ApiError::invalid(
            format!(
                "`{name}` must be between {} and {}, not {v}",
                range.start(),
                range.end()
            ),
            Some(name),
        )),
        _ => Ok(()),
    }
}

impl Options {
    /// Checks the options and resolves them against hearth's defaults (llama.cpp's sampling defaults).
    pub fn generate(&self) -> Result<Generate, ApiError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::invalid("only `n` = 1 is supported", Some("n")));
        }
        if self
            .logprobs
            .as_ref()
            .is_some_and(|v| v.as_bool() == Some(true) || v.as_u64().is_some_and(|n| n > 0))
        {
            return Err(ApiError::invalid("`logprobs` is not supported", Some("logprobs")));
        }
        check_range(self.temperature, "temperature", 0.0..=2.0)?;
        check_range(self.top_p, "top_p", 0.0..=1.0)?;
        check_range(self.min_p, "min_p", 0.0..=1.0)?;
        check_range(self.frequency_penalty, "frequency_penalty", -2.0..=2.0)?;
        check_range(self.presence_penalty, "presence_penalty", -2.0..=2.0)?;
        let max_tokens = match (self.max_completion_tokens.or(self.max_tokens), self.n_predict) {
            (Some(0), _) => return Err(ApiError::invalid("`max_tokens` must be at least 1", Some("max_tokens"))),
            (Some(n), _) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            (None, Some(n)) if n >= 0 => Some(n as usize),
            (None, _) => None,
        };
        let defaults = SamplerParams::default();
        let sampling = SamplerParams {
            temperature: self.temperature.unwrap_or(defaults.temperature),
            top_p: self.top_p.unwrap_or(defaults.top_p),
            top_k: self.top_k.map_or(defaults.top_k, |k| k as usize),
            min_p: self.min_p.unwrap_or(defaults.min_p),
            repeat_penalty: self.repeat_penalty.unwrap_or(defaults.repeat_penalty),
            frequency_penalty: self.frequency_penalty.unwrap_or(defaults.frequency_penalty),
            presence_penalty: self.presence_penalty.unwrap_or(defaults.presence_penalty),
            // Negative seeds are valid JSON integers; their bits are as good a seed as any.
            seed: self.seed.map_or(defaults.seed, |s| s as u64),
            ..defaults
        };
        Ok(Generate {
            sampling,
            max_tokens,
            stop: stop_strings(self.stop.as_ref())?,
            stream: self.stream.unwrap_or(false),
            include_usage: self
                .stream_options
                .as_ref()
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
        })
    }
}

/// `stop`: a string or an array of strings, of any length.
fn stop_strings(stop: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let bad = || ApiError::invalid("`stop` must be a string or an array of strings", Some("stop"));
    match stop {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(bad))
            .collect(),
        Some(_) => Err(bad()),
    }
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    messages: Vec<ChatMessage>,
}

#[derive(Debug, Deserialize)]
struct ChatMessage {
    role: String,
    content: Option<Value>,
}

impl JobRequest for ChatRequest {
    fn into_job(self, options: Options) -> Result<(Prompt, Generate), ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::invalid("`messages` must not be empty", Some("messages")));
        }
        let messages = self
            .messages
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                let role = match m.role.as_str() {
                    "system" | "developer" => "system",
                    "user" => "user",
                    "assistant" => "assistant",
                    other => {
                        return Err(ApiError::invalid(
                            format!(
                                "messages[{i}]: role `{other}` is not supported (system, developer, user, assistant)"
                            ),
                            Some("messages"),
                        ));
                    }
                };
                Ok(Message::new(role, message_text(i, m.content)?))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((Prompt::Chat(messages), options.generate()?))
    }
}

/// A message's content: a string, an array of text parts (joined), or null (an assistant turn with no text).
fn message_text(index: usize, content: Option<Value>) -> Result<String, ApiError> {
    let bad = |what: &str| ApiError::invalid(format!("messages[{index}].content: {what}"), Some("messages"));
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(
                |part| match (part.get("type").and_then(Value::as_str), part.get("text")) {
                    (Some("text"), Some(Value::String(t))) => Ok(t.as_str()),
                    (Some("text"), _) => Err(bad("a text part needs a string `text`")),
                    (Some(other), _) => Err(bad(&format!("`{other}` parts are not supported, only text"))),
                    (None, _) => Err(bad("each part needs a `type`")),
                },
            )
            .collect(),
        Some(_) => Err(bad("must be a string or an array of content parts")),
    }
}

/// `POST /v1/completions`: plain continuation, or fill-in-the-middle when `suffix` is given.
#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    prompt: Value,
    suffix: Option<String>,
    echo: Option<bool>,
}

impl JobRequest for CompletionRequest {
    fn into_job(self, options: Options) -> Result<(Prompt, Generate), ApiError> {
        if self.echo == Some(true) {
            return Err(ApiError::invalid("`echo` is not supported", Some("echo")));
        }
        let prompt = match self.prompt {
            Value::String(s) => s,
            Value::Array(mut items) if items.len() == 1 && items[0].is_string() => match items.pop() {
                Some(Value::String(s)) => s,
                _ => unreachable!("checked to be one string"),
            },
            _ => {
                return Err(ApiError::invalid(
                    "`prompt` must be a string (or an array holding one string)",
                    Some("prompt"),
                ));
            }
        };
        let prompt = match self.suffix {
            Some(suffix) if !suffix.is_empty() => Prompt::Fim {
                prefix: prompt,
                suffix,
                context: Vec::new(),
                middle: String::new(),
            },
            _ => Prompt::Text(prompt),
        };
        Ok((prompt, options.generate()?))
    }
}

/// `POST /infill`, llama.cpp's fill-in-the-middle endpoint (used by llama.vscode and friends).
#[derive(Debug, Deserialize)]
pub struct InfillRequest {
    #[serde(default)]
    input_prefix: String,
    #[serde(default)]
    input_suffix: String,
    #[serde(default)]
    input_extra: Vec<ExtraFile>,
    /// Text already typed at the cursor: it follows the middle token.
    #[serde(default)]
    prompt: String,
}

#[derive(Debug, Deserialize)]
struct ExtraFile {
    filename: String,
    text: String,
}

impl JobRequest for InfillRequest {
    fn into_job(self, options: Options) -> Result<(Prompt, Generate), ApiError> {
        let prompt = Prompt::Fim {
            prefix: self.input_prefix,
            suffix: self.input_suffix,
            context: self
                .input_extra
                .into_iter()
                .map(|f| ContextFile {
                    path: f.filename,
                    text: f.text,
                })
                .collect(),
            middle: self.prompt,
        };
        Ok((prompt, options.generate()?))
    }
}

/// Which endpoint a response is for: they share the generation, not the format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions`.
    Completion,
    /// `/infill`.
    Infill,
}

/// Token counts of one request.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt: usize,
    /// Of those, tokens that were already in the KV cache.
    pub cached: usize,
    /// Tokens generated.
    pub completion: usize,
}

impl Usage {
    fn json(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
            "prompt_tokens_details": {"cached_tokens": self.cached},
        })
    }
}

/// The identity every chunk of one response repeats.
#[derive(Clone, Debug)]
pub struct Identity {
    /// `chatcmpl-…` or `cmpl-…`.
    pub id: String,
    /// Unix time of the request.
    pub created: u64,
    /// The model's name.
    pub model: String,
}

fn finish_reason(finish: FinishReason) -> &'static str {
    match finish {
        FinishReason::Length | FinishReason::ContextFull => "length",
        FinishReason::Stop | FinishReason::Cancelled => "stop",
    }
}

impl Endpoint {
    /// The prefix of response ids.
    pub fn id_prefix(self) -> &'static str {
        match self {
            Endpoint::Chat => "chatcmpl",
            Endpoint::Completion | Endpoint::Infill => "cmpl",
        }
    }

    fn envelope(self, who: &Identity, object: &str, choices: Value) -> Value {
        json!({"id": who.id, "object": object, "created": who.created, "model": who.model, "choices": choices})
    }

    fn infill(who: &Identity, content: &str, finish: FinishReason, usage: Usage) -> Value {
        json!({
            "content": content,
            "stop": true,
            "model": who.model,
            "stop_type": if finish == FinishReason::Stop { "eos" } else { "limit" },
            "tokens_predicted": usage.completion,
            "tokens_evaluated": usage.prompt,
            "tokens_cached": usage.cached,
            "truncated": false,
        })
    }

    /// A whole (non-streamed) response.
    pub fn response(self, who: &Identity, text: &str, finish: FinishReason, usage: Usage) -> Value {
        let reason = finish_reason(finish);
        let mut body = match self {
            Endpoint::Chat => self.envelope(
                who,
                "chat.completion",
                json!([{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": null,
                        "finish_reason": reason}]),
            ),
            Endpoint::Completion => self.envelope(
                who,
                "text_completion",
                json!([{"index": 0, "text": text, "logprobs": null, "finish_reason": reason}]),
            ),
            Endpoint::Infill => return Self::infill(who, text, finish, usage),
        };
        body["usage"] = usage.json();
        body
    }

    /// The chunk that opens a stream, if the format has one.
    pub fn stream_head(self, who: &Identity) -> Option<Value> {
        (self == Endpoint::Chat).then(|| {
            self.envelope(
                who,
                "chat.completion.chunk",
                json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null,
                        "finish_reason": null}]),
            )
        })
    }

    /// A chunk carrying the next piece of text.
    pub fn stream_text(self, who: &Identity, text: &str) -> Value {
        match self {
            Endpoint::Chat => self.envelope(
                who,
                "chat.completion.chunk",
                json!([{"index": 0, "delta": {"content": text}, "logprobs": null, "finish_reason": null}]),
            ),
            Endpoint::Completion => self.envelope(
                who,
                "text_completion",
                json!([{"index": 0, "text": text, "logprobs": null, "finish_reason": null}]),
            ),
            Endpoint::Infill => json!({"content": text, "stop": false}),
        }
    }

    /// The chunks that close a stream: the finish reason, then (if asked) the usage.
    pub fn stream_tail(self, who: &Identity, finish: FinishReason, usage: Usage, include_usage: bool) -> Vec<Value> {
        let reason = finish_reason(finish);
        let (object, last) = match self {
            Endpoint::Chat => (
                "chat.completion.chunk",
                json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": reason}]),
            ),
            Endpoint::Completion => (
                "text_completion",
                json!([{"index": 0, "text": "", "logprobs": null, "finish_reason": reason}]),
            ),
            Endpoint::Infill => return vec![Self::infill(who, "", finish, usage)],
        };
        let mut tail = vec![self.envelope(who, object, last)];
        if include_usage {
            let mut chunk = self.envelope(who, object, json!([]));
            chunk["usage"] = usage.json();
            tail.push(chunk);
        }
        tail
    }

    /// Whether the stream ends with `data: [DONE]` (OpenAI's endpoints do; llama.cpp's `/infill` does not).
    pub fn ends_with_done(self) -> bool {
        self != Endpoint::Infill
    }
}
