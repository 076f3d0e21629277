//! `--backend URL`: chat, edit and complete answered by an OpenAI-compatible server — another `hearth serve`,
//! llama.cpp's server, vLLM on a team machine — instead of the local model. Only the generation moves: retrieval,
//! pinned files, the edit format, its checks and the safe writes stay here, unchanged.
//!
//! Chats stream from `POST /v1/chat/completions` (server-sent events, usage asked for in the last chunk);
//! completions use llama.cpp's `POST /infill`, which carries the related code of other files (`input_extra`), and
//! fall back to OpenAI's `POST /v1/completions` with `suffix` on servers without it.

use std::io::{BufRead, BufReader};
use std::ops::ControlFlow;
use std::time::Duration;

use clap::Args;
use hearth_runtime::backend::{Answer, Backend};
use hearth_runtime::chat::ChatError;
use hearth_runtime::conversation::ConversationError;
use hearth_runtime::fim::ContextFile;
use hearth_runtime::generate::FinishReason;
use hearth_runtime::retrieval::approximate_tokens;
use hearth_runtime::sampling::SamplerParams;
use hearth_runtime::template::Message;
use serde_json::{Value, json};

/// Where the model runs when it is not here.
#[derive(Debug, Args)]
pub struct BackendArgs {
    /// Use this OpenAI-compatible server instead of the local model (`hearth serve`, llama.cpp's server, vLLM),
    /// e.g. http://gpu-box:8000/v1. `-m` then names the server's model [default: the first one it lists].
    #[arg(long, value_name = "URL", env = "HEARTH_BACKEND")]
    backend: Option<String>,
    /// Bearer token for --backend.
    #[arg(
        long,
        value_name = "KEY",
        env = "HEARTH_API_KEY",
        hide_env_values = true,
        requires = "backend"
    )]
    api_key: Option<String>,
}

impl BackendArgs {
    /// The server, if one was given, checked to answer (`model` is `-m` as given, if it was).
    pub fn connect(&self, model: Option<&str>) -> anyhow::Result<Option<Remote>> {
        self.backend
            .as_deref()
            .map(|url| Remote::connect(url, model, self.api_key.clone()))
            .transpose()
    }
}

/// A client of one OpenAI-compatible server and one of its models.
#[derive(Debug)]
pub struct Remote {
    agent: ureq::Agent,
    /// Scheme, host and port (and any path before `/v1`), without a trailing slash.
    base: String,
    model: String,
    api_key: Option<String>,
}

/// A completion from [`Remote::infill`].
#[derive(Debug)]
pub struct Infill {
    /// The text to insert.
    pub text: String,
    /// Tokens generated, as the server counted them.
    pub tokens: usize,
    /// Whether the related code of other files reached the model (servers without `/infill` cannot take it).
    pub with_context: bool,
}

impl Remote {
    /// A client of the server at `url` (with or without the `/v1` that OpenAI clients put in their base URL),
    /// using `model`, or the first model the server lists.
    pub fn connect(url: &str, model: Option<&str>, api_key: Option<String>) -> anyhow::Result<Self> {
        let trimmed = url.trim_end_matches('/');
        if !(trimmed.starts_with("http://") || trimmed.starts_with("https://")) {
            anyhow::bail!("--backend `{url}` is not an http:// or https:// URL");
        }
        let base = trimmed.strip_suffix("/v1").unwrap_or(trimmed).to_owned();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            // Statuses are read here, to pass on the server's own error message.
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .build()
            .into();
        let mut remote = Remote {
            agent,
            base,
            model: model.unwrap_or_default().to_owned(),
            api_key,
        };
        // Asking for the model list checks the address and the key before any work is done.
        let models = remote.get("/v1/models")?;
        if remote.model.is_empty() {
            remote.model = models["data"][0]["id"]
                .as_str()
                .ok_or_else(|| anyhow::anyhow!("{}/v1/models lists no model; name one with -m", remote.base))?
                .to_owned();
        }
        Ok(remote)
    }

    /// The model's name on the server.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The server's URL, as OpenAI clients write it.
    pub fn url(&self) -> String {
        format!("{}/v1", self.base)
    }

    fn get(&self, path: &str) -> Result<Value, ChatError> {
        let mut request = self.agent.get(format!("{}{path}", self.base));
        if let Some(key) = &self.api_key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        let response = request.call().map_err(|e| self.unreachable(path, e))?;
        self.json(path, response)
    }

    /// Sends `body` to `path`; a status other than 200 becomes the error it stands for.
    fn post(&self, path: &str, body: &Value) -> Result<ureq::http::Response<ureq::Body>, ChatError> {
        let mut request = self.agent.post(format!("{}{path}", self.base));
        if let Some(key) = &self.api_key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        let mut response = request.send_json(body).map_err(|e| self.unreachable(path, e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        Err(self.refusal(path, status.as_u16(), &text))
    }

    fn json(&self, path: &str, mut response: ureq::http::Response<ureq::Body>) -> Result<Value, ChatError> {
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| self.unreachable(path, e))?;
        if status != 200 {
            return Err(self.refusal(path, status, &text));
        }
        serde_json::from_str(&text).map_err(|e| {
            ChatError::Backend(format!(
                "{}{path} answered with something that is not JSON: {e}",
                self.base
            ))
        })
    }

    fn unreachable(&self, path: &str, error: ureq::Error) -> ChatError {
        ChatError::Backend(format!("cannot reach {}{path}: {error}", self.base))
    }

    /// The error for a refused request: the server's own message (OpenAI's error object, llama.cpp's, or the raw
    /// body), a conversation-too-long error when it says so, and a hint for a missing key.
    fn refusal(&self, path: &str, status: u16, body: &str) -> ChatError {
        let parsed: Option<Value> = serde_json::from_str(body).ok();
        let error = parsed.as_ref().map(|v| &v["error"]);
        let message = error
            .and_then(|e| e["message"].as_str().or(e.as_str()))
            .map(str::to_owned)
            .unwrap_or_else(|| body.chars().take(300).collect::<String>().trim().to_owned());
        let code = error.and_then(|e| e["code"].as_str()).unwrap_or_default();
        let too_long = code == "context_length_exceeded"
            || error.and_then(|e| e["type"].as_str()) == Some("exceed_context_size_error")
            || (status == 400 && message.contains("context"));
        if too_long {
            return ChatError::Overflow(ConversationError::Refused(format!("{}: {message}", self.base)));
        }
        let hint = match status {
            401 | 403 if self.api_key.is_none() => " (the server wants a key: --api-key or HEARTH_API_KEY)",
            401 | 403 => " (is --api-key right?)",
            _ => "",
        };
        ChatError::Backend(format!(
            "{}{path} refused the request (HTTP {status}): {message}{hint}",
            self.base
        ))
    }

    /// Fills in the middle between `prefix` and `suffix`, with `context` files shown first where the server can
    /// take them.
    pub fn infill(
        &self,
        prefix: &str,
        suffix: &str,
        context: &[ContextFile],
        max_tokens: usize,
        sampler: &SamplerParams,
    ) -> Result<Infill, ChatError> {
        let extra: Vec<Value> = context
            .iter()
            .map(|f| json!({"filename": f.path, "text": f.text}))
            .collect();
        let body = with_sampling(
            json!({
                "model": self.model,
                "input_prefix": prefix,
                "input_suffix": suffix,
                "input_extra": extra,
                "n_predict": max_tokens,
                "stream": false,
            }),
            sampler,
        );
        match self.post("/infill", &body) {
            Ok(response) => {
                let reply = self.json("/infill", response)?;
                let text = reply["content"].as_str().unwrap_or_default().to_owned();
                Ok(Infill {
                    tokens: reply["tokens_predicted"]
                        .as_u64()
                        .map_or_else(|| approximate_tokens(&text), |n| n as usize),
                    text,
                    with_context: true,
                })
            }
            // No llama.cpp-style endpoint: OpenAI's completions with `suffix` (the server builds the FIM prompt).
            Err(ChatError::Backend(message)) if message.contains("(HTTP 404)") => {
                let body = with_sampling(
                    json!({"model": self.model, "prompt": prefix, "suffix": suffix, "max_tokens": max_tokens}),
                    sampler,
                );
                let response = self.post("/v1/completions", &body)?;
                let reply = self.json("/v1/completions", response)?;
                let text = reply["choices"][0]["text"].as_str().unwrap_or_default().to_owned();
                Ok(Infill {
                    tokens: reply["usage"]["completion_tokens"]
                        .as_u64()
                        .map_or_else(|| approximate_tokens(&text), |n| n as usize),
                    text,
                    with_context: false,
                })
            }
            Err(e) => Err(e),
        }
    }
}

/// The request `fields` (a JSON object) with the sampler's settings added under the names OpenAI-compatible servers
/// read. `top_k`, `min_p` and `repeat_penalty` are extensions (llama.cpp's and vLLM's), sent only when they do
/// something.
fn with_sampling(mut fields: Value, sampler: &SamplerParams) -> Value {
    fields["temperature"] = json!(sampler.temperature);
    fields["top_p"] = json!(sampler.top_p);
    fields["seed"] = json!(sampler.seed);
    fields["frequency_penalty"] = json!(sampler.frequency_penalty);
    fields["presence_penalty"] = json!(sampler.presence_penalty);
    if sampler.top_k > 0 {
        fields["top_k"] = json!(sampler.top_k);
    }
    if sampler.min_p > 0.0 {
        fields["min_p"] = json!(sampler.min_p);
    }
    if sampler.repeat_penalty != 1.0 {
        fields["repeat_penalty"] = json!(sampler.repeat_penalty);
    }
    fields
}

impl Backend for Remote {
    fn count_tokens(&self, text: &str) -> usize {
        // The server's tokenizer is not at hand; budgets are estimated (about four characters per token).
        approximate_tokens(text)
    }

    fn capacity(&self) -> Option<usize> {
        None
    }

    fn answer(
        &mut self,
        messages: &[Message],
        max_tokens: usize,
        sampler: &SamplerParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Answer, ChatError> {
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| json!({"role": m.role, "content": m.content}))
            .collect();
        let body = with_sampling(
            json!({
                "model": self.model,
                "messages": messages,
                "max_tokens": max_tokens,
                "stream": true,
                "stream_options": {"include_usage": true},
            }),
            sampler,
        );
        let path = "/v1/chat/completions";
        let response = self.post(path, &body)?;
        let mut answer = Answer {
            text: String::new(),
            prompt_tokens: 0,
            cached_tokens: 0,
            generated: 0,
            finish: FinishReason::Stop,
        };
        let mut pieces = 0;
        let mut usage = None;
        let reader = BufReader::new(response.into_body().into_reader());
        for line in reader.lines() {
            let line = line.map_err(|e| ChatError::Backend(format!("{}{path}: the stream broke: {e}", self.base)))?;
            let Some(data) = line.strip_prefix("data:").map(str::trim) else {
                continue; // event names, comments, blank separators
            };
            if data == "[DONE]" {
                break;
            }
            let chunk: Value = serde_json::from_str(data)
                .map_err(|e| ChatError::Backend(format!("{}{path}: an event is not JSON ({e}): {data}", self.base)))?;
            if !chunk["error"].is_null() {
                return Err(self.refusal(path, 200, data));
            }
            if chunk["usage"].is_object() {
                usage = Some(chunk["usage"].clone());
            }
            let choice = &chunk["choices"][0];
            if choice["finish_reason"].as_str() == Some("length") {
                answer.finish = FinishReason::Length;
            }
            if let Some(piece) = choice["delta"]["content"].as_str().filter(|p| !p.is_empty()) {
                pieces += 1;
                answer.text.push_str(piece);
                if on_text(piece).is_break() {
                    // Dropping the response closes the connection, which tells the server to stop.
                    answer.finish = FinishReason::Cancelled;
                    break;
                }
            }
        }
        let count = |v: &Value| v.as_u64().map(|n| n as usize);
        match usage {
            Some(usage) => {
                answer.prompt_tokens = count(&usage["prompt_tokens"]).unwrap_or(0);
                answer.cached_tokens = count(&usage["prompt_tokens_details"]["cached_tokens"]).unwrap_or(0);
                answer.generated = count(&usage["completion_tokens"]).unwrap_or(pieces);
            }
            // Without usage (a stopped stream, or a server that does not report it) each piece counts as a token.
            None => answer.generated = pieces,
        }
        Ok(answer)
    }
}
