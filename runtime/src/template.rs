//! Chat templates: the model's `tokenizer.chat_template` (Jinja) rendered with minijinja, or a built-in template for
//! models whose file has none. Templates are untrusted input: there is no loader (no file access), execution is
//! bounded by fuel and recursion limits, and the output size is capped.

use hearth_kernel::gguf::Gguf;
use minijinja::{Environment, Error, ErrorKind, context};
use serde::Serialize;

use crate::tokenizer::Tokenizer;

/// Instructions a template may execute per render (a long conversation needs a few thousand per message).
const FUEL: u64 = 50_000_000;
/// Largest rendered prompt accepted.
const MAX_OUTPUT: usize = 64 << 20;

/// Gemma's turn format, for Gemma files without a template (system text goes before the first user turn).
const GEMMA: &str = "{{ bos_token }}{% if messages and messages[0].role == 'system' %}\
{% set system = messages[0].content %}{% set turns = messages[1:] %}{% else %}{% set system = '' %}\
{% set turns = messages %}{% endif %}{% for m in turns %}\
<start_of_turn>{{ 'model' if m.role == 'assistant' else m.role }}\n\
{% if loop.first and system %}{{ system }}\n\n{% endif %}{{ m.content | trim }}<end_of_turn>\n{% endfor %}\
{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}";

/// ChatML (`<|im_start|>role … <|im_end|>`), for other files without a template.
const CHATML: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}\
{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// One chat message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl Message {
    /// A message from `role` saying `content`.
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Message {
            role: role.to_owned(),
            content: content.into(),
        }
    }
}

/// Why a template could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The template failed (syntax, a raised exception, out of fuel…).
    #[error("the chat template failed: {0}")]
    Render(String),
    /// The output exceeded the size cap.
    #[error("the chat template produced more than {MAX_OUTPUT} bytes")]
    TooLong,
}

/// A model's chat template.
#[derive(Clone, Debug)]
pub struct ChatTemplate {
    source: String,
    bos: String,
    eos: String,
    builtin: bool,
}

impl ChatTemplate {
    /// The template of `file`, or a built-in one (Gemma's turn format for gemma files, ChatML otherwise), with the
    /// texts of `tokenizer`'s BOS and EOS tokens as the `bos_token` and `eos_token` it may refer to.
    pub fn from_gguf(file: &Gguf<'_>, tokenizer: &Tokenizer) -> Self {
        let text_of = |id: Option<u32>| {
            id.map_or(String::new(), |id| {
                String::from_utf8_lossy(tokenizer.piece(id)).into_owned()
            })
        };
        let (source, builtin) = match file.get("tokenizer.chat_template").and_then(|v| v.as_str()) {
            Some(t) => (t.to_owned(), false),
            None => {
                let arch = file.get("general.architecture").and_then(|v| v.as_str()).unwrap_or("");
                (
                    (if arch.starts_with("gemma") { GEMMA } else { CHATML }).to_owned(),
                    true,
                )
            }
        };
        ChatTemplate {
            source,
            bos: text_of(tokenizer.bos()),
            eos: text_of(tokenizer.eos()),
            builtin,
        }
    }

    /// Whether the file had no template and a built-in one is used.
    pub fn is_builtin(&self) -> bool {
        self.builtin
    }

    /// Renders `messages`; with `add_generation_prompt` the text ends where the assistant's answer begins.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String, TemplateError> {
        let mut env = Environment::new();
        env.set_fuel(Some(FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |message: String| -> Result<String, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, message))
        });
        let err = |e: Error| TemplateError::Render(e.to_string());
        let template = env.template_from_str(&self.source).map_err(err)?;
        let out = template
            .render(context! {
                messages => minijinja::value::Serde(messages),
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos,
                eos_token => &self.eos,
            })
            .map_err(err)?;
        if out.len() > MAX_OUTPUT {
            return Err(TemplateError::TooLong);
        }
        Ok(out)
    }

    /// The token ids of `messages` rendered with the assistant's turn opened: the prompt that asks for the answer.
    pub fn prompt(&self, tokenizer: &Tokenizer, messages: &[Message]) -> Result<Vec<u32>, TemplateError> {
        // The rendered text carries its own BOS and turn markers.
        Ok(tokenizer.encode(&self.render(messages, true)?, false, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(source: &str) -> ChatTemplate {
        ChatTemplate {
            source: source.to_owned(),
            bos: "<s>".into(),
            eos: "</s>".into(),
            builtin: false,
        }
    }

    #[test]
    fn builtin_templates_render_turns() {
        let msgs = [
            Message::new("system", "Be brief."),
            Message::new("user", "Hi "),
            Message::new("assistant", "Hello"),
        ];
        let gemma = template(GEMMA).render(&msgs, true).unwrap();
        assert_eq!(
            gemma,
            "<s><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello<end_of_turn>\n<start_of_turn>model\n"
        );
        let chatml = template(CHATML).render(&msgs[1..2], true).unwrap();
        assert_eq!(chatml, "<|im_start|>user\nHi <|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn hostile_templates_fail_cleanly() {
        let msgs = [Message::new("user", "x")];
        let infinite =
            template("{% for i in range(100000000) %}{% for j in range(100000000) %}x{% endfor %}{% endfor %}");
        assert!(infinite.render(&msgs, true).is_err());
        let include = template("{% include '/etc/passwd' %}");
        assert!(include.render(&msgs, true).is_err());
        let raised = template("{{ raise_exception('no system role') }}");
        assert!(
            raised
                .render(&msgs, true)
                .unwrap_err()
                .to_string()
                .contains("no system role")
        );
        let recursive = template("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
        assert!(recursive.render(&msgs, true).is_err());
    }
}
