//! API keys: who is calling, and what they may touch.
//!
//! A key looks like `hlk_<id>_<secret>`: `hlk_` makes it recognisable (to
//! people and to secret scanners), `<id>` (16 characters) finds its record,
//! and `<secret>` is 32 random bytes. The store keeps only a SHA-256 of the
//! whole key, and a presented key is compared with it in constant time. A
//! key is shown once, when it is created.
//!
//! Keys are kept in memory (loaded at start, changed through the API), so
//! checking one costs no database round trip; `last_used_at` is written at
//! most once a minute per key, off the request path. Several processes on
//! one database each keep their copy: a key unknown to this process is
//! looked up in the store before it is refused (so a key another process
//! just created works at once), and every copy is reloaded every
//! [`REFRESH_EVERY`] (so a revocation through another process takes effect
//! within that time).
//!
//! Scopes: an admin key may do everything; an app key may emit events to,
//! and read and manage, its own app only. Anything of another app answers
//! 404, exactly as if it did not exist.

use std::collections::HashMap;
use std::path::Path;
use std::sync::RwLock;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::{ApiError, AppState};
use crate::store::api_keys::ApiKey;
use crate::store::{Store, StoreError, api_keys};

/// What every key starts with.
pub const KEY_PREFIX: &str = "hlk_";
const ID_LEN: usize = 16;
/// `last_used_at` is written at most this often per key.
const TOUCH_EVERY_MS: i64 = 60_000;
/// How often a process reloads the keys from the store (PostgreSQL only:
/// on SQLite this process is the only one changing them).
pub const REFRESH_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// An admin key, or the engine running with `--insecure-no-auth`.
    Admin,
    /// An app key: this app only.
    App(String),
}

impl Caller {
    /// The app the caller is confined to; `None` for an admin.
    pub fn scope(&self) -> Option<&str> {
        match self {
            Caller::Admin => None,
            Caller::App(app) => Some(app),
        }
    }

    /// Whether `app_id` is the caller's to touch; another app's answers 404,
    /// as if it did not exist.
    pub fn check_app(&self, app_id: &str) -> Result<(), ApiError> {
        match self {
            Caller::App(own) if own != app_id => {
                Err(ApiError::NotFound(format!("app {app_id:?} not found")))
            }
            _ => Ok(()),
        }
    }

    /// The app a request acts on: the one asked for (checked), else the
    /// caller's own. An admin must name one when `required`.
    pub fn app_or_own(&self, asked: Option<String>) -> Result<Option<String>, ApiError> {
        match (asked, self) {
            (Some(app), _) => {
                self.check_app(&app)?;
                Ok(Some(app))
            }
            (None, Caller::App(own)) => Ok(Some(own.clone())),
            (None, Caller::Admin) => Ok(None),
        }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self {
            Caller::Admin => Ok(()),
            Caller::App(_) => Err(ApiError::Forbidden(
                "this needs an admin key; an app key acts on its own app only".into(),
            )),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Caller, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::Unauthorized("an API key is needed".into()))
    }
}

struct Entry {
    hash: [u8; 32],
    app_id: Option<String>,
    revoked: bool,
    last_touch: AtomicI64,
}

/// The keys in force, in memory.
pub struct Keys {
    /// `--insecure-no-auth`: every caller is an admin.
    insecure: bool,
    entries: RwLock<HashMap<String, Entry>>,
}

/// A key just created: the only time its secret is seen.
pub struct NewKey {
    pub key: String,
    pub row: ApiKey,
}

fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, chunk) in text.as_bytes().chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
    }
    Some(out)
}

/// The id part of a well-formed key.
fn key_id(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == ID_LEN && secret.len() == 43).then_some(id)
}

/// A fresh key and its row (not yet stored).
pub fn generate(name: &str, app_id: Option<String>, now: i64) -> NewKey {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let id: String = (0..ID_LEN)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect();
    let secret: [u8; 32] = rand::random();
    let key = format!("{KEY_PREFIX}{id}_{}", URL_SAFE_NO_PAD.encode(secret));
    NewKey {
        row: ApiKey {
            id,
            name: name.to_string(),
            app_id,
            hash: hex(&hash(&key)),
            created_at: now,
            last_used_at: None,
            revoked_at: None,
        },
        key,
    }
}

impl Keys {
    /// The keys of the store (all of them, so a revoked key is known as
    /// revoked rather than unknown).
    pub fn new(rows: Vec<ApiKey>, insecure: bool) -> Keys {
        let keys = Keys {
            insecure,
            entries: RwLock::new(HashMap::new()),
        };
        for row in rows {
            keys.add(&row);
        }
        keys
    }

    pub fn insecure(&self) -> bool {
        self.insecure
    }

    /// Puts a stored key in force (or records its revocation).
    pub fn add(&self, row: &ApiKey) {
        let Some(hash) = unhex(&row.hash) else {
            tracing::error!(key = %row.id, "API key record has an unreadable hash; ignored");
            return;
        };
        self.entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                row.id.clone(),
                Entry {
                    hash,
                    app_id: row.app_id.clone(),
                    revoked: row.revoked_at.is_some(),
                    last_touch: AtomicI64::new(row.last_used_at.unwrap_or(0)),
                },
            );
    }

    /// Replaces every key with the store's (another process may have added
    /// or revoked some).
    pub fn refresh(&self, rows: Vec<ApiKey>) {
        let fresh = Keys::new(rows, self.insecure);
        let fresh = fresh
            .entries
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        *entries = fresh
            .into_iter()
            .map(|(id, entry)| {
                // Keep the last use this process saw, so touches stay rare.
                if let Some(old) = entries.get(&id) {
                    let seen = old.last_touch.load(Ordering::Relaxed);
                    entry.last_touch.fetch_max(seen, Ordering::Relaxed);
                }
                (id, entry)
            })
            .collect();
    }

    /// Whether the id part of `key` names no key this process knows.
    fn unknown(&self, key: &str) -> Option<String> {
        let id = key_id(key)?;
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        (!entries.contains_key(id)).then(|| id.to_string())
    }

    /// Who holds `key`; `None` for a key that is malformed, unknown or
    /// revoked. Also says whether its `last_used_at` is due to be written.
    fn check(&self, key: &str, now: i64) -> Option<(String, Caller, bool)> {
        let id = key_id(key)?;
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let entry = entries.get(id)?;
        let matches: bool = entry.hash.ct_eq(&hash(key)).into();
        if !matches || entry.revoked {
            return None;
        }
        let last = entry.last_touch.load(Ordering::Relaxed);
        let touch = now - last >= TOUCH_EVERY_MS
            && entry
                .last_touch
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        let caller = match &entry.app_id {
            None => Caller::Admin,
            Some(app) => Caller::App(app.clone()),
        };
        Some((id.to_string(), caller, touch))
    }
}

/// Middleware on every `/v1` route: finds the caller from
/// `Authorization: Bearer <key>`, or answers 401.
pub async fn require_key(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if state.keys.insecure() {
        req.extensions_mut().insert(Caller::Admin);
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(presented) = presented else {
        return ApiError::Unauthorized("an API key is needed: Authorization: Bearer hlk_…".into())
            .into_response();
    };
    let now = crate::id::now_ms();
    if state.store.backend() == crate::store::Backend::Postgres
        && let Some(id) = state.keys.unknown(presented)
    {
        // Perhaps another process on the same database created it.
        if let Ok(Some(row)) = state.store.read(move |c| api_keys::find(c, &id)).await {
            state.keys.add(&row);
        }
    }
    let Some((id, caller, touch)) = state.keys.check(presented, now) else {
        return ApiError::Unauthorized("the API key is not valid, or was revoked".into())
            .into_response();
    };
    if touch {
        // Off the request path, and never a reason to refuse it.
        let store = state.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.write(move |c| api_keys::touch(c, &id, now)).await {
                tracing::debug!(error = %e, "could not record an API key's last use");
            }
        });
    }
    // Everything under /v1/apps/{app_id} belongs to that app: checked here
    // once for every such route (the handlers scope their queries too).
    if let Some(app) = req
        .uri()
        .path()
        .strip_prefix("/v1/apps/")
        .and_then(|rest| rest.split('/').next())
        .filter(|app| !app.is_empty())
        && let Err(e) = caller.check_app(app)
    {
        return e.into_response();
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// Name of the file the first admin key is written to.
pub const ADMIN_KEY_FILE: &str = "admin.key";

/// On first start (no key in the store), creates an admin key, writes it to
/// `<data-dir>/admin.key` (mode 0600) and prints it once. Returns every key.
pub async fn bootstrap(store: &Store, data_dir: &Path, insecure: bool) -> anyhow::Result<Keys> {
    let count = store.read(api_keys::count).await?;
    let new = generate("initial admin key", None, crate::id::now_ms());
    let row = new.row.clone();
    let created = count == 0
        && !insecure
        && store
            .write(move |c| api_keys::insert_first(c, &row))
            .await
            .map_err(|e: StoreError| anyhow::anyhow!("failed to store the admin key: {e}"))?;
    if created {
        let path = data_dir.join(ADMIN_KEY_FILE);
        write_private(&path, &format!("{}\n", new.key))?;
        println!(
            "hookline created an admin API key (shown once; also in {}, mode 0600):\n  {}",
            path.display(),
            new.key
        );
    }
    let rows = store.read(api_keys::all).await?;
    Ok(Keys::new(rows, insecure))
}

/// Writes `text` to a file only its owner can read.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| anyhow::anyhow!("failed to write {}: {e}", path.display()))?;
    // A file left by an earlier store keeps its old mode: set it again.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_recognised_and_checked_against_its_hash_only() {
        let admin = generate("a", None, 0);
        let app = generate("b", Some("app_1".into()), 0);
        assert!(admin.key.starts_with("hlk_") && admin.key.len() == 4 + 16 + 1 + 43);
        assert!(
            !admin.row.hash.contains(&admin.key[20..]),
            "only a hash is kept"
        );
        let keys = Keys::new(vec![admin.row.clone(), app.row.clone()], false);
        assert_eq!(keys.check(&admin.key, 0).unwrap().1, Caller::Admin);
        assert_eq!(
            keys.check(&app.key, 0).unwrap().1,
            Caller::App("app_1".into())
        );
        // The right id with a wrong secret, garbage, and a revoked key.
        let mut forged = admin.key.clone();
        forged.replace_range(25..30, "AAAAA");
        assert!(keys.check(&forged, 0).is_none());
        assert!(keys.check("hlk_nope", 0).is_none());
        let mut revoked = app.row.clone();
        revoked.revoked_at = Some(1);
        keys.add(&revoked);
        assert!(keys.check(&app.key, 0).is_none());
    }

    #[test]
    fn last_use_is_written_at_most_once_a_minute() {
        let k = generate("a", None, 0);
        let keys = Keys::new(vec![k.row], false);
        assert!(keys.check(&k.key, 100_000).unwrap().2);
        assert!(!keys.check(&k.key, 100_001).unwrap().2);
        assert!(keys.check(&k.key, 200_000).unwrap().2);
    }

    #[test]
    fn scopes() {
        let app = Caller::App("a".into());
        assert!(app.check_app("a").is_ok());
        assert!(matches!(app.check_app("b"), Err(ApiError::NotFound(_))));
        assert!(app.require_admin().is_err());
        assert_eq!(app.app_or_own(None).unwrap().as_deref(), Some("a"));
        assert!(app.app_or_own(Some("b".into())).is_err());
        assert_eq!(Caller::Admin.app_or_own(None).unwrap(), None);
    }
}
