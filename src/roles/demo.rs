//! `dsys demo`.
use crate::Result;

/// Runs the demo.
pub fn run() -> Result<()> {
    todo!()
}
