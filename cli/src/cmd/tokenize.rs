//! `hearth tokenize`: the token ids (and pieces) of a text, as the model's tokenizer splits it.

use clap::Args;
use hearth_runtime::ModelFile;
use hearth_runtime::tokenizer::Tokenizer;

use crate::args::{ModelArg, prompt_text};

#[derive(Debug, Args)]
pub struct TokenizeArgs {
    #[command(flatten)]
    model: ModelArg,
    /// Text to tokenize; `-` (or nothing) reads standard input.
    #[arg(short = 'p', long = "prompt")]
    prompt: Option<String>,
    /// Print only the ids, as a JSON list (like llama-tokenize --ids).
    #[arg(long)]
    ids: bool,
    /// Treat special-token text such as `<|im_start|>` as plain characters.
    #[arg(long)]
    no_parse_special: bool,
    /// Do not add the BOS/EOS tokens the model asks for.
    #[arg(long)]
    no_bos: bool,
}

pub fn run(args: TokenizeArgs) -> anyhow::Result<()> {
    let text = prompt_text(args.prompt.as_deref())?;
    let file = ModelFile::open(args.model.resolve()?)?;
    let tokenizer = Tokenizer::from_gguf(file.gguf())?;
    let ids = tokenizer.encode(&text, !args.no_bos, !args.no_parse_special);
    if args.ids {
        println!("{}", serde_json::to_string(&ids)?);
    } else {
        for id in ids {
            println!("{id:>7} -> {:?}", String::from_utf8_lossy(tokenizer.piece(id)));
        }
    }
    Ok(())
}
