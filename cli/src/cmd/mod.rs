//! One module per subcommand.

pub mod bench;
pub mod chat;
pub mod index;
pub mod inspect;
pub mod map;
pub mod models;
pub mod perplexity;
pub mod quantize;
pub mod run;
pub mod search;
pub mod serve;
pub mod tokenize;
