//! One module per subcommand.

pub mod bench;
pub mod inspect;
pub mod models;
pub mod perplexity;
pub mod quantize;
pub mod run;
pub mod serve;
pub mod tokenize;
