//! coordinator
use crate::Result;
use std::time::Duration;
/// Config.
pub struct Config {}
impl Config {
    /// new
    pub fn new(_listen: String, _t: Duration) -> Config {
        Config {}
    }
}
/// run
pub fn run(_c: Config) -> Result<()> {
    todo!()
}
