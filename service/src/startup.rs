//! The first steps of a server binary: its configuration and its async runtime, or the exit
//! code that says why there are none.

use std::path::Path;
use std::process::ExitCode;

use tokio::runtime::Runtime;

use crate::config::Layered;

/// Loads the configuration and starts the runtime. A bad configuration exits with 2 (a usage
/// error: nothing was started); a runtime that cannot start with 1. Either is explained on
/// stderr, prefixed with `program`.
pub fn prepare<C: Layered>(program: &str, config: Option<&Path>) -> Result<(C, Runtime), ExitCode> {
    let config = C::load(config).map_err(|error| {
        eprintln!("{program}: configuration: {error}");
        ExitCode::from(2)
    })?;
    let runtime = Runtime::new().map_err(|error| {
        eprintln!("{program}: cannot start the async runtime: {error}");
        ExitCode::FAILURE
    })?;
    Ok((config, runtime))
}
