//! The five subcommands, one module each: `dsys <role>` runs `roles::<role>::run`.

pub mod client;
pub mod coordinator;
pub mod demo;
pub mod server;
pub mod status;
