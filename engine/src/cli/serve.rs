//! `hookline serve`.

use crate::cli::args::ServeArgs;
use crate::config::{Config, DeclaredApp};

/// Runs the engine with `args` and the apps the config file declares.
pub fn run(args: ServeArgs, declared: Vec<DeclaredApp>) -> anyhow::Result<()> {
    let mut config = Config::from_args(args)?;
    config.declared = declared;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(crate::server::serve(config))
}
