//! The five subcommands, one module each: `dsys <role>` runs `roles::<role>::run`.
//! `children` starts coordinators and servers as child processes for `demo`, which runs a
//! whole cluster on one machine.

pub mod children;
pub mod client;
pub mod coordinator;
pub mod demo;
pub mod server;
pub mod status;
