//! `hookline secret-key new|status`: the keys that encrypt endpoint
//! credentials at rest (see `store::sealed` and docs/security.md).

use anyhow::Context as _;
use diesel::Connection as _;
use diesel::connection::SimpleConnection as _;

use super::args::SecretKeyStatusArgs;
use crate::store::sealed::{self, KEY_VAR, PREVIOUS_VAR, Sealer};
use crate::store::{Conn, endpoints};

/// Prints a new random key.
pub fn new() -> anyhow::Result<()> {
    println!("{}", sealed::new_key());
    Ok(())
}

/// Prints which keys the stored credentials are sealed with, against the
/// keys in the environment, so an operator knows when an old key may go.
pub fn status(args: SecretKeyStatusArgs) -> anyhow::Result<()> {
    let sealer = Sealer::from_env()?;
    let path = args
        .database
        .unwrap_or_else(|| args.data_dir.join("hookline.db"));
    anyhow::ensure!(path.exists(), "no database at {}", path.display());
    let url = path.to_str().context("database path is not valid UTF-8")?;
    let mut conn = Conn::establish(url)
        .with_context(|| format!("failed to open database {}", path.display()))?;
    conn.batch_execute("PRAGMA busy_timeout = 5000; PRAGMA query_only = ON;")?;
    let census = endpoints::sealing_census(&mut conn)
        .context("failed to read endpoint credentials (is this a hookline database?)")?;

    let current = sealer.current_key_id();
    match current {
        Some(id) => println!("{KEY_VAR}: key {id}"),
        None => println!("{KEY_VAR}: not set (credentials are stored in the clear)"),
    }
    if census.is_empty() {
        println!("no endpoint credentials stored");
    }
    let mut unopenable = 0;
    for (key, count) in &census {
        match key.as_deref() {
            None => println!("{count:>8} plain"),
            Some(id) if Some(id) == current => {
                println!("{count:>8} sealed with key {id} (current)")
            }
            Some(id) if sealer.knows(id) => {
                println!(
                    "{count:>8} sealed with key {id} (in {PREVIOUS_VAR}; re-sealed at the next start)"
                )
            }
            Some(id) => {
                unopenable += count;
                println!(
                    "{count:>8} sealed with key {id} (NOT among the keys given: the engine will refuse to start)"
                )
            }
        }
    }
    anyhow::ensure!(
        unopenable == 0,
        "{unopenable} stored values are sealed with keys that are not in {KEY_VAR} or {PREVIOUS_VAR}"
    );
    Ok(())
}
