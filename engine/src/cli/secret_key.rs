//! `hookline secret-key new|status`: the keys that encrypt endpoint
//! credentials at rest (see `store::sealed` and docs/security.md).

use anyhow::Context as _;

use super::args::SecretKeyStatusArgs;
use crate::store::sealed::{self, KEY_VAR, PREVIOUS_VAR, Sealer};
use crate::store::{DatabaseUrl, connection, endpoints};

/// Prints a new random key.
pub fn new() -> anyhow::Result<()> {
    println!("{}", sealed::new_key());
    Ok(())
}

/// Prints which keys the stored credentials are sealed with, against the
/// keys in the environment, so an operator knows when an old key may go.
pub fn status(args: SecretKeyStatusArgs) -> anyhow::Result<()> {
    let sealer = Sealer::from_env()?;
    let url = args.database.resolve(&args.data_dir);
    if let DatabaseUrl::Sqlite(path) = &url {
        anyhow::ensure!(path.exists(), "no database at {}", path.display());
    }
    let mut conn = url
        .connect()
        .with_context(|| format!("failed to open database {url}"))?;
    // Read-only, as the engine's readers are.
    connection::sqlite_reader_setup(&mut conn)?;
    connection::postgres_reader_setup(&mut conn)?;
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
