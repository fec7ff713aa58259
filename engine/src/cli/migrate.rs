//! `hookline migrate`: apply the store's pending migrations and exit, for
//! deployments that migrate before starting (or alongside) engine processes.

use super::args::MigrateArgs;
use crate::store::{DatabaseUrl, Store};

/// Applies pending migrations and prints each one applied.
pub fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let url = args.database.resolve(&args.data_dir);
    if let DatabaseUrl::Sqlite(path) = &url
        && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)?;
    }
    let applied = Store::migrate(&url)?;
    if applied.is_empty() {
        println!("{url}: up to date");
    }
    for name in applied {
        println!("{url}: applied {name}");
    }
    Ok(())
}
