//! Compiled plugin artifacts on disk, so a restart with many plugins loads
//! them in microseconds instead of compiling each for tens of milliseconds.
//!
//! An entry is keyed by the component's SHA-256 and by wasmtime's
//! compatibility hash of this engine's settings (version, target, epoch
//! interruption, memory layout …): a precompiled artifact only runs in an
//! engine configured like the one that made it. Each file carries a checksum
//! of the artifact; a stale, foreign or corrupt entry is recompiled and
//! rewritten, never loaded.

use std::hash::{Hash as _, Hasher as _};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

const MAGIC: &[u8; 8] = b"HLCWASM1";

pub struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
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
    /// A cache in `dir` (created if missing) for components of `engine`.
    pub fn new(dir: &Path, engine: &Engine) -> std::io::Result<ArtifactCache> {
        std::fs::create_dir_all(dir)?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        Ok(ArtifactCache {
            dir: dir.to_path_buf(),
            engine_key: format!("{:016x}", hasher.finish()),
        })
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
        if let Some(component) = self.read(engine, &path) {
            return Ok((component, Loaded::Cached));
        }
        let component = Component::new(engine, bytes).map_err(anyhow::Error::from)?;
        if let Err(e) = self.write(&component, &path) {
            // A cache that cannot be written costs start-up time, nothing else.
            tracing::warn!(path = %path.display(), error = %e, "failed to write plugin cache entry");
        }
        Ok((component, Loaded::Compiled))
    }

    fn read(&self, engine: &Engine, path: &Path) -> Option<Component> {
        let file = std::fs::read(path).ok()?;
        let verified = file.len() > MAGIC.len() + 32
            && &file[..MAGIC.len()] == MAGIC
            && Sha256::digest(&file[MAGIC.len() + 32..]).as_slice()
                == &file[MAGIC.len()..MAGIC.len() + 32];
        if !verified {
            tracing::warn!(path = %path.display(), "plugin cache entry is corrupt; recompiling");
            return None;
        }
        let artifact = &file[MAGIC.len() + 32..];
        // SAFETY: `deserialize` trusts its input to be an artifact that
        // wasmtime itself produced. This file was written by `write` below
        // (its checksum matches, so it is byte for byte what wasmtime's
        // `serialize` returned), and wasmtime checks on its own that the
        // artifact's version and settings match this engine.
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

    fn write(&self, component: &Component, path: &Path) -> anyhow::Result<()> {
        let artifact = component.serialize().map_err(anyhow::Error::from)?;
        let mut file = Vec::with_capacity(MAGIC.len() + 32 + artifact.len());
        file.extend_from_slice(MAGIC);
        file.extend_from_slice(&Sha256::digest(&artifact));
        file.extend_from_slice(&artifact);
        // Write then rename: a reader never sees half a file.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, &file)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component_bytes() -> &'static [u8] {
        crate::plugins::builtin::BUILTIN[0].1
    }

    fn hash(bytes: &[u8]) -> String {
        crate::plugins::hex(&Sha256::digest(bytes))
    }

    #[test]
    fn compiles_once_then_loads_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let cache = ArtifactCache::new(dir.path(), &engine).unwrap();
        let (bytes, h) = (component_bytes(), hash(component_bytes()));
        assert_eq!(cache.load(&engine, bytes, &h).unwrap().1, Loaded::Compiled);
        assert_eq!(cache.load(&engine, bytes, &h).unwrap().1, Loaded::Cached);
    }

    #[test]
    fn a_corrupt_entry_is_recompiled_and_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let cache = ArtifactCache::new(dir.path(), &engine).unwrap();
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
        let a = ArtifactCache::new(dir.path(), &plain).unwrap();
        let b = ArtifactCache::new(dir.path(), &with_epochs).unwrap();
        assert_eq!(a.load(&plain, bytes, &h).unwrap().1, Loaded::Compiled);
        assert_eq!(b.load(&with_epochs, bytes, &h).unwrap().1, Loaded::Compiled);
        assert_eq!(b.load(&with_epochs, bytes, &h).unwrap().1, Loaded::Cached);
    }
}
