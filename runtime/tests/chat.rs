//! Chats on SmolLM2-135M with greedy sampling: follow-ups reuse the KV cache, retrieval puts the right code in the
//! prompt and names it, pinned files go with every question, a stopped answer keeps what was said, and a full context
//! drops old retrieved code first, then (only when allowed) old turns — or refuses with a clear error.

use std::fs;
use std::ops::ControlFlow;
use std::path::Path;

use hearth_runtime::backend::LocalBackend;
use hearth_runtime::chat::{Chat, ChatError, ChatSettings};
use hearth_runtime::conversation::OverflowPolicy;
use hearth_runtime::generate::FinishReason;
use hearth_runtime::model::Model;
use hearth_runtime::retrieval::Project;
use hearth_runtime::sampling::SamplerParams;
use hearth_runtime::template::ChatTemplate;
use hearth_runtime::tokenizer::Tokenizer;
use hearth_runtime::{ModelFile, NoProgress, Store};

/// Runs `test` on a chat on SmolLM2 (greedy, answers of at most `max_answer_tokens`) about a fresh two-file project,
/// whose directory it is given.
fn with_chat(context: usize, max_answer_tokens: usize, test: impl FnOnce(&mut Chat<'_>, &Path)) {
    let path = Store::from_env()
        .unwrap()
        .resolve("smollm2-135m-instruct", &mut NoProgress)
        .unwrap();
    let file = ModelFile::open_to_run(path, &mut NoProgress).unwrap();
    let tokenizer = Tokenizer::from_gguf(file.gguf()).unwrap();
    let template = ChatTemplate::from_gguf(file.gguf(), &tokenizer);
    let model = Model::load(&file).unwrap();
    let (dir, project) = project();
    let backend = LocalBackend::new(&model, &tokenizer, &template, context).unwrap();
    let mut chat = Chat::new(Box::new(backend), settings(max_answer_tokens), Some(project));
    test(&mut chat, dir.path());
}

fn settings(max_answer_tokens: usize) -> ChatSettings {
    ChatSettings {
        max_answer_tokens,
        sampler: SamplerParams::greedy(),
        ..ChatSettings::default()
    }
}

fn project() -> (tempfile::TempDir, Project) {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("billing.py"),
        "def apply_discount(total, percent):\n    \"\"\"Reduces a total by a percentage, never below zero.\"\"\"\n    \
         return max(0.0, total * (1 - percent / 100))\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("shipping.py"),
        "def shipping_cost(weight_kg):\n    return 4.5 + 1.2 * weight_kg\n",
    )
    .unwrap();
    let (project, _) = Project::index(dir.path(), &mut NoProgress).unwrap();
    (dir, project)
}

fn ask(chat: &mut Chat<'_>, text: &str) -> hearth_runtime::chat::TurnStats {
    chat.ask(text, |_| ControlFlow::Continue(())).unwrap()
}

#[test]
fn follow_ups_reuse_the_cache_and_retrieval_names_its_sources() {
    with_chat(2048, 24, |chat, _dir| {
        let first = ask(chat, "How is a discount applied to the total?");
        assert_eq!(first.cached_tokens, 0);
        assert_eq!(first.sources[0].path, "billing.py");
        assert_eq!(first.sources[0].symbol.as_deref(), Some("apply_discount"));
        let context = chat.turns()[0].context.as_deref().unwrap();
        assert!(context.contains("def apply_discount(total, percent):"), "{context}");
        assert!(!chat.turns()[0].answer.is_empty());

        chat.set_retrieval(false);
        let second = ask(chat, "Can it go below zero?");
        // Everything up to the new question was cached: the first prompt and (retokenized) most of the answer.
        assert!(
            second.cached_tokens >= first.prompt_tokens,
            "{second:?} after {first:?}"
        );
        assert!(second.prompt_tokens - second.cached_tokens < 40, "{second:?}");
        assert!(second.sources.is_empty());
        assert_eq!(chat.turns().len(), 2);
    });
}

#[test]
fn pinned_files_stopped_answers_and_transcripts() {
    with_chat(2048, 64, |chat, dir| {
        assert_eq!(chat.pin("*.py").unwrap(), ["billing.py", "shipping.py"]);
        assert!(
            chat.pin(dir.join("billing.py").to_str().unwrap()).unwrap().is_empty(),
            "already pinned"
        );
        assert!(matches!(chat.pin("nothing*.rs"), Err(ChatError::File { .. })));
        assert!(
            matches!(chat.pin("/etc/hostname"), Err(ChatError::File { .. })),
            "outside the project"
        );
        let budget = chat.budget().unwrap();
        assert!(budget.files > 30, "{budget:?}");
        assert!(budget.free() < budget.capacity);

        // Stopped while the prompt is read (the first call, before any text): no answer and no turn.
        let stats = chat
            .ask("Explain shipping_cost.", |piece| {
                assert_eq!(piece, "", "text before the prompt was read");
                ControlFlow::Break(())
            })
            .unwrap();
        assert_eq!((stats.finish, stats.generated), (FinishReason::Cancelled, 0));
        assert!(chat.turns().is_empty());

        // Stop after the first piece of text: the answer keeps that piece, and the chat goes on.
        let mut pieces = Vec::new();
        let stats = chat
            .ask("Explain shipping_cost.", |piece| {
                if piece.is_empty() {
                    return ControlFlow::Continue(());
                }
                pieces.push(piece.to_owned());
                ControlFlow::Break(())
            })
            .unwrap();
        assert_eq!(stats.finish, FinishReason::Cancelled);
        assert_eq!(pieces.len(), 1);
        assert_eq!(chat.turns()[0].answer, pieces[0]);
        let next = ask(chat, "And apply_discount?");
        assert_ne!(next.finish, FinishReason::Cancelled);

        let saved = chat.transcript();
        assert_eq!(saved.pinned, ["billing.py", "shipping.py"]);
        assert_eq!(chat.unpin(Some("ship*")).unwrap(), ["shipping.py"]);
        chat.clear();
        assert!(chat.turns().is_empty());
        chat.restore(saved.clone()).unwrap();
        assert_eq!(chat.transcript(), saved);
        fs::remove_file(dir.join("shipping.py")).unwrap();
        let err = chat.ask("Anything?", |_| ControlFlow::Continue(())).unwrap_err();
        assert!(err.to_string().starts_with("shipping.py: "), "{err}");
        assert_eq!(chat.turns().len(), 2, "a refused question leaves no turn behind");
    });
}

#[test]
fn a_full_context_drops_old_retrieved_code_then_old_turns_or_refuses() {
    with_chat(400, 16, |chat, _dir| {
        let mut contexts_dropped = 0;
        for _ in 0..4 {
            contexts_dropped += ask(chat, "How is the shipping cost computed from the weight?").contexts_dropped;
        }
        assert!(contexts_dropped > 0);
        assert!(chat.turns()[0].context.is_none(), "the oldest turn's code went first");

        let long = "Please explain it again in more detail. ".repeat(12);
        let mut refused = None;
        for _ in 0..6 {
            if let Err(e) = chat.ask(&long, |_| ControlFlow::Continue(())) {
                refused = Some(e);
                break;
            }
        }
        let refused = refused.expect("the context fills up");
        assert!(matches!(refused, ChatError::Overflow(_)));
        assert!(
            refused.to_string().contains("more than the context of 400"),
            "{refused}"
        );

        chat.set_overflow(OverflowPolicy::DropOldestTurns);
        let turns_before = chat.turns().len();
        let stats = ask(chat, &long);
        assert!(stats.turns_dropped > 0);
        assert_eq!(chat.turns().len(), turns_before + 1 - stats.turns_dropped);
        assert!(stats.prompt_tokens + 16 <= 400);
    });
}
