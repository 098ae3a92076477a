//! The three roles of the system, one module each: `dsys <role>` runs `roles::<role>::run`.
//! A coordinator, servers and clients are the whole system; what runs a cluster for you
//! (`dsys status`, `dsys demo`, `dsys bench`) is in `tools/`.

pub mod client;
pub mod coordinator;
pub mod server;
