//! The six subcommands, one module each: `dsys <role>` runs `roles::<role>::run`.
//! `children` starts coordinators and servers as child processes for the two that run a
//! whole cluster on one machine (`demo` and `bench`).

pub mod bench;
pub mod children;
pub mod client;
pub mod coordinator;
pub mod demo;
pub mod server;
pub mod status;
