//! One module per subcommand.

pub mod adapter;
pub mod bench;
pub mod chat;
pub mod complete;
pub mod config;
pub mod edit;
pub mod index;
pub mod init;
pub mod inspect;
pub mod map;
pub mod models;
pub mod perplexity;
pub mod presets;
pub mod quantize;
pub mod run;
pub mod search;
pub mod serve;
pub mod tokenize;
pub mod train;
