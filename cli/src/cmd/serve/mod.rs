//! `hearth serve`: an OpenAI-compatible HTTP server for editors and tools (chat completions, completions with
//! fill-in-the-middle, llama.cpp's `/infill`), with the KV cache reused across requests that share a prefix.

mod http;
mod openai;
mod worker;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use anyhow::Context as _;
use clap::Args;

use crate::args::{LoraArg, ModelArg, ThreadsArg};

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    model: ModelArg,
    #[command(flatten)]
    lora: LoraArg,
    /// Address to listen on. The default, loopback, keeps the server private to this machine.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Port to listen on (0 picks a free one; the address is printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Context size of each slot in tokens; 0 means the model's trained context, capped at 8192.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 0)]
    ctx_size: usize,
    /// KV-cache slots: conversations (or editor completions) whose prefixes stay cached side by side.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    slots: u16,
    #[command(flatten)]
    threads: ThreadsArg,
    /// Require `Authorization: Bearer KEY` on every API route (not on /health).
    #[arg(long, env = "HEARTH_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = 8 << 20)]
    max_body: usize,
}

/// The name clients see: the known model's name, or the file's stem.
fn model_id(spec: &str, path: &Path) -> String {
    if hearth_runtime::store::find_known(spec).is_some() {
        spec.to_owned()
    } else {
        path.file_stem()
            .map_or_else(|| spec.to_owned(), |s| s.to_string_lossy().into_owned())
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    args.threads.apply()?;
    let path = args.model.resolve()?;
    let model_id = model_id(&args.model.spec()?, &path);
    let slots = usize::from(args.slots);
    let (info, jobs) = worker::spawn(path, args.lora, args.ctx_size, slots)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the server's event loop")?;
    runtime.block_on(async move {
        let address = SocketAddr::new(args.host, args.port);
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        let address = listener.local_addr()?;
        eprintln!(
            "hearth serve: {model_id} on http://{address}/v1 (context {} × {slots} slots{}{}); Ctrl-C stops",
            info.context,
            if info.fim { ", fill-in-the-middle" } else { "" },
            if args.api_key.is_some() {
                ", API key required"
            } else {
                ""
            },
        );
        let state = Arc::new(http::AppState {
            jobs,
            model_id,
            info,
            api_key: args.api_key,
            max_body: args.max_body,
            requests: AtomicU64::new(0),
            started: http::unix_now(),
        });
        axum::serve(listener, http::router(state))
            .with_graceful_shutdown(async {
                // If the signal cannot be watched, the server runs until it is killed.
                if tokio::signal::ctrl_c().await.is_err() {
                    std::future::pending::<()>().await;
                }
            })
            .await
            .context("serving")
    })
}
