//! Streaming an answer to the terminal: code blocks in colour (when stdout is a terminal), then a stats line.

use std::io::{self, Write};

use hearth_runtime::chat::{SourceRef, TurnStats};
use hearth_runtime::generate::FinishReason;

const CODE: &str = "\x1b[36m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// Writes streamed Markdown, colouring fenced code blocks. Text is written as it comes except the start of a line,
/// held back until it is clear whether the line is a fence.
#[derive(Debug)]
pub struct Renderer<W: Write> {
    out: W,
    colour: bool,
    in_code: bool,
    /// The current line's text while it could still be a fence (at most three backticks).
    pending: String,
    at_line_start: bool,
}

impl<W: Write> Renderer<W> {
    /// A renderer writing to `out`, with colour or not.
    pub fn new(out: W, colour: bool) -> Self {
        Renderer {
            out,
            colour,
            in_code: false,
            pending: String::new(),
            at_line_start: true,
        }
    }

    /// Writes a piece of the answer.
    pub fn push(&mut self, text: &str) -> io::Result<()> {
        for piece in text.split_inclusive('\n') {
            self.push_line_piece(piece)?;
        }
        self.out.flush()
    }

    fn push_line_piece(&mut self, piece: &str) -> io::Result<()> {
        let ends_line = piece.ends_with('\n');
        if self.at_line_start {
            self.pending.push_str(piece);
            let head: String = self.pending.trim_start().chars().take(3).collect();
            if head.len() < 3 && "```".starts_with(&head) && !ends_line {
                return Ok(());
            }
            let line = std::mem::take(&mut self.pending);
            if line.trim_start().starts_with("```") {
                // The fence line itself takes the colour of the block it opens, and the reset follows its close.
                let opening = !self.in_code;
                self.in_code = opening;
                self.write_coloured(&line, true)?;
            } else {
                self.write_coloured(&line, self.in_code)?;
            }
            self.at_line_start = ends_line;
            return Ok(());
        }
        self.write_coloured(piece, self.in_code)?;
        self.at_line_start = ends_line;
        Ok(())
    }

    fn write_coloured(&mut self, text: &str, code: bool) -> io::Result<()> {
        if code && self.colour {
            write!(self.out, "{CODE}{text}{RESET}")
        } else {
            self.out.write_all(text.as_bytes())
        }
    }

    /// Ends the answer: flushes a held-back line start and ends the line.
    pub fn finish(&mut self) -> io::Result<()> {
        let rest = std::mem::take(&mut self.pending);
        self.write_coloured(&rest, self.in_code)?;
        if !self.at_line_start || !rest.is_empty() {
            writeln!(self.out)?;
        }
        self.in_code = false;
        self.at_line_start = true;
        self.out.flush()
    }

    /// Writes a dim status line (plain when colour is off).
    pub fn status(&mut self, line: &str) -> io::Result<()> {
        if self.colour {
            writeln!(self.out, "{DIM}{line}{RESET}")
        } else {
            writeln!(self.out, "{line}")
        }
    }
}

/// The line shown after an answer: prompt and cache use, first-token time, speed and how it ended.
pub fn stats_line(stats: &TurnStats) -> String {
    if stats.finish == FinishReason::Cancelled && stats.generated == 0 {
        return format!(
            "[prompt {} tokens ({} cached) · stopped after {:.2} s, before the first token; the question was dropped]",
            stats.prompt_tokens,
            stats.cached_tokens,
            stats.first_token.as_secs_f64(),
        );
    }
    let mut line = format!(
        "[prompt {} tokens ({} cached) · first token {:.2} s · {} tokens at {:.1} t/s",
        stats.prompt_tokens,
        stats.cached_tokens,
        stats.first_token.as_secs_f64(),
        stats.generated,
        stats.tokens_per_second()
    );
    match stats.finish {
        FinishReason::Stop => {}
        FinishReason::Length => line.push_str(" · stopped at the answer limit"),
        FinishReason::ContextFull => line.push_str(" · stopped: the context is full"),
        FinishReason::Cancelled => line.push_str(" · stopped"),
    }
    if stats.contexts_dropped > 0 {
        line.push_str(&format!(
            " · code retrieved for {} earlier turn(s) dropped to make room",
            stats.contexts_dropped
        ));
    }
    if stats.turns_dropped > 0 {
        line.push_str(&format!(
            " · {} oldest turn(s) dropped to make room",
            stats.turns_dropped
        ));
    }
    line.push(']');
    line
}

/// `path:start-end (symbol)` for each source, comma-separated.
pub fn sources_line(sources: &[SourceRef]) -> Option<String> {
    if sources.is_empty() {
        return None;
    }
    let list: Vec<String> = sources
        .iter()
        .map(|s| match &s.symbol {
            Some(symbol) => format!("{}:{}-{} ({symbol})", s.path, s.start_line, s.end_line),
            None => format!("{}:{}-{}", s.path, s.start_line, s.end_line),
        })
        .collect();
    Some(format!("sources: {}", list.join(", ")))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn render(pieces: &[&str]) -> String {
        let mut out = Vec::new();
        let mut renderer = Renderer::new(&mut out, true);
        for p in pieces {
            renderer.push(p).unwrap();
        }
        renderer.finish().unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn fenced_code_is_coloured_even_when_the_fence_arrives_in_pieces() {
        let out = render(&["Use:\n`", "``py", "thon\nx = 1\n", "```", "\nDone."]);
        let plain = out.replace(CODE, "").replace(RESET, "");
        assert_eq!(plain, "Use:\n```python\nx = 1\n```\nDone.\n");
        assert!(out.starts_with(&format!("Use:\n{CODE}```py")), "{out:?}");
        assert!(out.contains(&format!("{CODE}x = 1\n{RESET}")), "{out:?}");
        assert!(out.ends_with(&format!("{RESET}\nDone.\n")), "{out:?}");
    }

    #[test]
    fn the_stats_line_says_how_an_answer_ended() {
        let mut stats = TurnStats {
            prompt_tokens: 1300,
            cached_tokens: 84,
            first_token: Duration::from_millis(2500),
            generated: 21,
            generation_time: Duration::from_secs(4),
            finish: FinishReason::Cancelled,
            sources: Vec::new(),
            contexts_dropped: 0,
            turns_dropped: 0,
        };
        assert_eq!(
            stats_line(&stats),
            "[prompt 1300 tokens (84 cached) · first token 2.50 s · 21 tokens at 5.0 t/s · stopped]"
        );
        stats.generated = 0;
        assert_eq!(
            stats_line(&stats),
            "[prompt 1300 tokens (84 cached) · stopped after 2.50 s, before the first token; the question was dropped]"
        );
    }

    #[test]
    fn inline_backticks_and_plain_text_pass_through() {
        assert_eq!(render(&["Call `f", "()` now", "\n"]), "Call `f()` now\n");
        assert_eq!(render(&["``a``"]), "``a``\n");
    }
}
