//! What runs a cluster for you but is not part of it: `dsys status`, `dsys demo` and
//! `dsys bench`, one module each (`dsys <tool>` runs `tools::<tool>::run`), and
//! `children`, which starts coordinators and servers as child processes for the two that
//! run a whole cluster on one machine (`demo` and `bench`).
//!
//! The tools use the roles (the demo's clients are sessions; the bench's too); no role uses
//! a tool. What both sides need, such as the status reply's frames, is in `protocol/`.

pub mod bench;
pub mod children;
pub mod demo;
pub mod status;
