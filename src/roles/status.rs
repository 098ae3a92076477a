//! `dsys status`: asks the coordinator for its table of servers and prints it.
use crate::Output;
use crate::Result;

/// Prints the cluster table.
pub fn run(_coordinator: &str, _output: Output) -> Result<()> {
    todo!()
}
