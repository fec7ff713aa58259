//! Compiled plugin artifacts on disk, so a restart with many plugins loads
//! them in microseconds instead of compiling each for tens of milliseconds.
//!
//! An entry is keyed by the component's SHA-256 and by wasmtime's
//! compatibility hash of this engine's settings (version, target, epoch
//! interruption, memory layout …): a precompiled artifact only runs in an
//! engine configured like the one that made it.
//!
//! An artifact is executable code that wasmtime loads without checking it,
//! so each file carries an HMAC-SHA256 of the component's hash and the
//! artifact, keyed with a secret the engine keeps outside the cache
//! directory (`plugin-cache.key`, mode 0600). A stale, corrupt or planted
//! entry (one written by anyone without the key) is recompiled and
//! rewritten, never loaded. The directory is created with mode 0700.

use std::hash::{Hash as _, Hasher as _};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use wasmtime::Engine;
use wasmtime::component::Component;

const MAGIC: &[u8; 8] = b"HLCWASM2";

pub struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
    /// The key of the entries' MACs.
    mac_key: [u8; 32],
}

/// Where a component came from, for logs and measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    /// Compiled now (and written to the cache when there is one).
    Compiled,
    /// Deserialised from a verified cache entry.
    Cached,
}

impl ArtifactCache {
    /// A cache in `dir` (created if missing, mode 0700) for components of
    /// `engine`, its entries authenticated with the key in `key_file`
    /// (created if missing, mode 0600).
    pub fn new(dir: &Path, key_file: &Path, engine: &Engine) -> std::io::Result<ArtifactCache> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt as _;
            builder.mode(0o700);
        }
        builder.create(dir)?;
        let mac_key = load_or_create_key(key_file)?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        Ok(ArtifactCache {
            dir: dir.to_path_buf(),
            engine_key: format!("{:016x}", hasher.finish()),
            mac_key,
        })
    }

    fn mac(&self, hash: &str, artifact: &[u8]) -> [u8; 32] {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.mac_key).expect("HMAC takes keys of any size");
        mac.update(hash.as_bytes());
        mac.update(artifact);
        mac.finalize().into_bytes().into()
    }

    fn path(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}-{}.cwasm", self.engine_key))
    }

    /// The component for `bytes` (whose SHA-256 is `hash`): from the cache
    /// when a verified entry exists, else compiled and cached.
    pub fn load(
        &self,
        engine: &Engine,
        bytes: &[u8],
        hash: &str,
    ) -> anyhow::Result<(Component, Loaded)> {
        let path = self.path(hash);
        if let Some(component) = self.read(engine, &path, hash) {
            return Ok((component, Loaded::Cached));
        }
        let component = Component::new(engine, bytes).map_err(anyhow::Error::from)?;
        if let Err(e) = self.write(&component, &path, hash) {
            // A cache that cannot be written costs start-up time, nothing else.
            tracing::warn!(path = %path.display(), error = %e, "failed to write plugin cache entry");
        }
        Ok((component, Loaded::Compiled))
    }

    fn read(&self, engine: &Engine, path: &Path, hash: &str) -> Option<Component> {
        let file = std::fs::read(path).ok()?;
        let verified = file.len() > MAGIC.len() + 32 && &file[..MAGIC.len()] == MAGIC && {
            use subtle::ConstantTimeEq as _;
            let expected = self.mac(hash, &file[MAGIC.len() + 32..]);
            bool::from(expected.ct_eq(&file[MAGIC.len()..MAGIC.len() + 32]))
        };
        if !verified {
            tracing::warn!(path = %path.display(), "plugin cache entry is corrupt or was not written by this engine; recompiling");
            return None;
        }
        let artifact = &file[MAGIC.len() + 32..];
        // SAFETY: `deserialize` trusts its input to be an artifact that
        // wasmtime itself produced. This file was written by `write` below:
        // its MAC, keyed with a secret only this engine holds, matches, so
        // it is byte for byte what wasmtime's `serialize` returned for this
        // component. wasmtime checks on its own that the artifact's version
        // and settings match this engine.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(engine, artifact) };
        match component {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "plugin cache entry does not fit this engine; recompiling");
                None
            }
        }
    }

    fn write(&self, component: &Component, path: &Path, hash: &str) -> anyhow::Result<()> {
        let artifact = component.serialize().map_err(anyhow::Error::from)?;
        let mut file = Vec::with_capacity(MAGIC.len() + 32 + artifact.len());
        file.extend_from_slice(MAGIC);
        file.extend_from_slice(&self.mac(hash, &artifact));
        file.extend_from_slice(&artifact);
        // Write then rename: a reader never sees half a file.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, &file)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

/// The cache's MAC key: read from `path`, or made and written there (0600).
fn load_or_create_key(path: &Path) -> std::io::Result<[u8; 32]> {
    if let Ok(bytes) = std::fs::read(path)
        && let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice())
    {
        return Ok(key);
    }
    let key: [u8; 32] = rand::random();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    use std::io::Write as _;
    options.open(path)?.write_all(&key)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component_bytes() -> &'static [u8] {
        crate::plugins::builtin::BUILTIN[0].1
    }

    fn hash(bytes: &[u8]) -> String {
        use sha2::Digest as _;
        crate::plugins::hex(&Sha256::digest(bytes))
    }

    #[test]
    fn an_entry_written_without_the_key_is_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let (bytes, h) = (component_bytes(), hash(component_bytes()));
        // Someone else's engine, with another key, plants an entry where
        // this engine looks; a well-formed file, but not this engine's.
        let planter = ArtifactCache::new(
            &dir.path().join("c"),
            &dir.path().join("other.key"),
            &engine,
        )
        .unwrap();
        planter.load(&engine, bytes, &h).unwrap();
        let cache =
            ArtifactCache::new(&dir.path().join("c"), &dir.path().join("k"), &engine).unwrap();
        assert_eq!(cache.load(&engine, bytes, &h).unwrap().1, Loaded::Compiled);
        assert_eq!(cache.load(&engine, bytes, &h).unwrap().1, Loaded::Cached);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir.path().join("c")), 0o700);
            assert_eq!(mode(&dir.path().join("k")), 0o600);
        }
    }

    #[test]
    fn compiles_once_then_loads_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let cache =
            ArtifactCache::new(&dir.path().join("c"), &dir.path().join("k"), &engine).unwrap();
        let (bytes, h) = (component_bytes(), hash(component_bytes()));
        assert_eq!(cache.load(&engine, bytes, &h).unwrap().1, Loaded::Compiled);
        assert_eq!(cache.load(&engine, bytes, &h).unwrap().1, Loaded::Cached);
    }

    #[test]
    fn a_corrupt_entry_is_recompiled_and_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let cache =
            ArtifactCache::new(&dir.path().join("c"), &dir.path().join("k"), &engine).unwrap();
        let (bytes, h) = (component_bytes(), hash(component_bytes()));
        cache.load(&engine, bytes, &h).unwrap();
        let path = cache.path(&h);
        let mut file = std::fs::read(&path).unwrap();
        let middle = file.len() / 2;
        file[middle] ^= 0xff;
        std::fs::write(&path, &file).unwrap();
        assert_eq!(
            cache.load(&engine, bytes, &h).unwrap().1,
            Loaded::Compiled,
            "corrupt entry not trusted"
        );
        assert_eq!(
            cache.load(&engine, bytes, &h).unwrap().1,
            Loaded::Cached,
            "entry rewritten"
        );

        // A truncated entry too.
        std::fs::write(&path, &file[..40]).unwrap();
        assert_eq!(cache.load(&engine, bytes, &h).unwrap().1, Loaded::Compiled);
    }

    #[test]
    fn an_engine_with_other_settings_does_not_use_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let plain = Engine::default();
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let with_epochs = Engine::new(&config).unwrap();
        let (bytes, h) = (component_bytes(), hash(component_bytes()));
        let a = ArtifactCache::new(&dir.path().join("c"), &dir.path().join("k"), &plain).unwrap();
        let b =
            ArtifactCache::new(&dir.path().join("c"), &dir.path().join("k"), &with_epochs).unwrap();
        assert_eq!(a.load(&plain, bytes, &h).unwrap().1, Loaded::Compiled);
        assert_eq!(b.load(&with_epochs, bytes, &h).unwrap().1, Loaded::Compiled);
        assert_eq!(b.load(&with_epochs, bytes, &h).unwrap().1, Loaded::Cached);
    }
}
