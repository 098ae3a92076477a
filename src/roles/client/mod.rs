//! client
use crate::{Output, Result};
use std::path::PathBuf;
/// Config.
pub struct Config {
    /// x
    pub coordinator: String,
    /// x
    pub server: Option<String>,
    /// x
    pub name: String,
    /// x
    pub output: Output,
    /// x
    pub download_dir: PathBuf,
    /// x
    pub send: Vec<String>,
    /// x
    pub send_files: Vec<PathBuf>,
}
/// run
pub fn run(_c: Config) -> Result<()> {
    todo!()
}
