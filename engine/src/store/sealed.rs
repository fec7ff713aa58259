//! Endpoint credentials encrypted at rest.
//!
//! An endpoint's URL (a chat platform's webhook URL is a credential), its
//! signing secrets and its plugin configuration (which carries tokens) are
//! stored sealed when the operator gives the engine a key in
//! `HOOKLINE_SECRET_KEY`: XChaCha20-Poly1305 with a random 192-bit nonce per
//! value, so no nonce bookkeeping is needed however many values are written.
//!
//! A sealed value is text: `hlsealed:1:<key id>:<base64url(nonce ‖ ciphertext)>`.
//! The key id (a hash of the key, never the key) says which key opens it, so
//! several keys can be in use during a rotation. The associated data binds a
//! value to its column and row: a value copied into another row or column
//! (say, a secret into the URL column, to make the engine send it somewhere)
//! does not open.
//!
//! Without a key, values are stored as they are. Plain values never look
//! sealed (URLs start with `http`, secrets with `whsec_`/`whsk_`, plugin
//! configurations with `{`), so a store may hold both while it moves from
//! one state to the other; [`Sealer::needs_reseal`] says which rows to rewrite.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

/// What a sealed value starts with.
const PREFIX: &str = "hlsealed:1:";
const NONCE_LEN: usize = 24;
/// The environment variable holding the current key.
pub const KEY_VAR: &str = "HOOKLINE_SECRET_KEY";
/// The environment variable holding older keys, comma-separated: values
/// sealed with them still open, and are re-sealed with the current key.
pub const PREVIOUS_VAR: &str = "HOOKLINE_SECRET_KEY_PREVIOUS";

/// A key that is not usable, named by where it came from.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{var}: not base64 (make one with `hookline secret-key new`)")]
    NotBase64 { var: &'static str },
    #[error(
        "{var}: a key is 32 bytes, this one is {len} (make one with `hookline secret-key new`)"
    )]
    Length { var: &'static str, len: usize },
}

/// A stored value that does not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Sealed with a key the engine was not given.
    #[error("sealed with key {0}, which is neither {KEY_VAR} nor in {PREVIOUS_VAR}")]
    UnknownKey(String),
    /// The key is right but the value was altered, or moved from another
    /// row or column.
    #[error("sealed value does not authenticate (altered, or moved from another row)")]
    Forged,
    #[error("sealed value is malformed")]
    Malformed,
}

struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl Key {
    fn parse(text: &str, var: &'static str) -> Result<Key, KeyError> {
        let text = text.trim();
        let bytes = [STANDARD, URL_SAFE]
            .iter()
            .find_map(|engine| engine.decode(text).ok())
            .or_else(|| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok())
            .ok_or(KeyError::NotBase64 { var })?;
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| KeyError::Length {
            var,
            len: bytes.len(),
        })?;
        Ok(Key {
            id: key_id(&key),
            cipher: XChaCha20Poly1305::new(&key.into()),
        })
    }
}

/// The id a key is known by in sealed values and logs: 8 bytes of a hash
/// of it, in hex. It identifies the key without weakening it.
fn key_id(key: &[u8; 32]) -> String {
    let digest = Sha256::new()
        .chain_update(b"hookline secret key id\0")
        .chain_update(key)
        .finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random key, base64 (what `hookline secret-key new` prints).
pub fn new_key() -> String {
    STANDARD.encode(rand::random::<[u8; 32]>())
}

/// Seals and opens stored credentials. With no current key it stores values
/// as they are (and still opens values sealed with a previous key, which is
/// how an operator turns encryption off).
#[derive(Default)]
pub struct Sealer {
    current: Option<Key>,
    previous: Vec<Key>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("current", &self.current.as_ref().map(|k| &k.id))
            .field(
                "previous",
                &self.previous.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Sealer {
    /// Keys as the operator gives them: the current one (if any) and older
    /// ones, comma-separated.
    pub fn new(current: Option<&str>, previous: Option<&str>) -> Result<Sealer, KeyError> {
        let current = current
            .filter(|k| !k.trim().is_empty())
            .map(|k| Key::parse(k, KEY_VAR))
            .transpose()?;
        let previous = previous
            .unwrap_or_default()
            .split(',')
            .filter(|k| !k.trim().is_empty())
            .map(|k| Key::parse(k, PREVIOUS_VAR))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Sealer { current, previous })
    }

    /// Keys from `HOOKLINE_SECRET_KEY` and `HOOKLINE_SECRET_KEY_PREVIOUS`.
    pub fn from_env() -> Result<Sealer, KeyError> {
        let var = |name| std::env::var(name).ok();
        Sealer::new(var(KEY_VAR).as_deref(), var(PREVIOUS_VAR).as_deref())
    }

    /// The id of the key new values are sealed with; `None` stores them plain.
    pub fn current_key_id(&self) -> Option<&str> {
        self.current.as_ref().map(|k| k.id.as_str())
    }

    /// Whether the key with id `id` is one of this sealer's.
    pub fn knows(&self, id: &str) -> bool {
        self.current
            .iter()
            .chain(&self.previous)
            .any(|k| k.id == id)
    }

    /// `value` as stored in `column` of row `row`.
    pub fn seal(&self, value: &str, column: &str, row: &str) -> String {
        let Some(key) = &self.current else {
            return value.to_string();
        };
        let nonce: [u8; NONCE_LEN] = rand::random();
        let aad = associated_data(column, row);
        let ciphertext = key
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: &aad,
                },
            )
            // Only fails for messages beyond 256 GiB.
            .expect("XChaCha20-Poly1305 encryption of a stored value");
        let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        format!("{PREFIX}{}:{}", key.id, URL_SAFE_NO_PAD.encode(blob))
    }

    /// The value stored as `stored` in `column` of row `row`.
    pub fn open(&self, stored: &str, column: &str, row: &str) -> Result<String, OpenError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_string());
        };
        let (id, blob) = rest.split_once(':').ok_or(OpenError::Malformed)?;
        let key = self
            .current
            .iter()
            .chain(&self.previous)
            .find(|k| k.id == id)
            .ok_or_else(|| OpenError::UnknownKey(id.to_string()))?;
        let blob = URL_SAFE_NO_PAD
            .decode(blob)
            .map_err(|_| OpenError::Malformed)?;
        if blob.len() < NONCE_LEN {
            return Err(OpenError::Malformed);
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let plain = key
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &associated_data(column, row),
                },
            )
            .map_err(|_| OpenError::Forged)?;
        String::from_utf8(plain).map_err(|_| OpenError::Malformed)
    }

    /// Whether `stored` is not in the form this sealer writes: plain while
    /// there is a key, or sealed with another key (or sealed while there is none).
    pub fn needs_reseal(&self, stored: &str) -> bool {
        match (stored_key_id(stored), self.current_key_id()) {
            (None, None) => false,
            (Some(id), Some(current)) => id != current,
            _ => true,
        }
    }
}

/// The key id a stored value is sealed with; `None` when it is plain.
pub fn stored_key_id(stored: &str) -> Option<&str> {
    stored
        .strip_prefix(PREFIX)
        .map(|rest| rest.split_once(':').map_or(rest, |(id, _)| id))
}

fn associated_data(column: &str, row: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(column.len() + row.len() + 16);
    aad.extend_from_slice(b"hookline\0");
    aad.extend_from_slice(column.as_bytes());
    aad.push(0);
    aad.extend_from_slice(row.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(current: Option<&str>, previous: Option<&str>) -> Sealer {
        Sealer::new(current, previous).expect("valid keys")
    }

    #[test]
    fn sealed_values_open_with_the_same_key_and_do_not_contain_the_value() {
        let key = new_key();
        let s = sealer(Some(&key), None);
        let url = "https://hooks.slack.com/services/T000/B000/XXXXXXXX";
        let stored = s.seal(url, "url", "ep_1");
        assert!(stored.starts_with(PREFIX), "{stored}");
        assert!(!stored.contains("hooks.slack.com"), "{stored}");
        assert_ne!(
            stored,
            s.seal(url, "url", "ep_1"),
            "a fresh nonce per value"
        );
        assert_eq!(s.open(&stored, "url", "ep_1").unwrap(), url);
    }

    #[test]
    fn a_value_moved_to_another_row_or_column_or_altered_does_not_open() {
        let s = sealer(Some(&new_key()), None);
        let stored = s.seal("whsec_abc", "secret", "ep_1");
        assert!(matches!(
            s.open(&stored, "url", "ep_1"),
            Err(OpenError::Forged)
        ));
        assert!(matches!(
            s.open(&stored, "secret", "ep_2"),
            Err(OpenError::Forged)
        ));
        let mut altered = stored.clone().into_bytes();
        let last = altered.len() - 1;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert!(matches!(
            s.open(&altered, "secret", "ep_1"),
            Err(OpenError::Forged | OpenError::Malformed)
        ));
    }

    #[test]
    fn rotation_opens_old_values_and_reseals_them_under_the_new_key() {
        let (old, new) = (new_key(), new_key());
        let before = sealer(Some(&old), None);
        let stored = before.seal("whsec_abc", "secret", "ep_1");

        let without_old = sealer(Some(&new), None);
        let err = without_old.open(&stored, "secret", "ep_1").unwrap_err();
        assert!(
            matches!(&err, OpenError::UnknownKey(id) if id == before.current_key_id().unwrap()),
            "{err}"
        );
        assert!(err.to_string().contains(PREVIOUS_VAR), "{err}");

        let during = sealer(Some(&new), Some(&format!(" {old} ,")));
        assert!(during.needs_reseal(&stored));
        let value = during.open(&stored, "secret", "ep_1").unwrap();
        let resealed = during.seal(&value, "secret", "ep_1");
        assert!(!during.needs_reseal(&resealed));
        assert_eq!(
            stored_key_id(&resealed),
            during.current_key_id(),
            "sealed with the new key"
        );
        assert_eq!(
            without_old.open(&resealed, "secret", "ep_1").unwrap(),
            value
        );
    }

    #[test]
    fn without_a_key_values_stay_plain_and_sealed_ones_are_opened_for_decryption() {
        let key = new_key();
        let plain = Sealer::default();
        assert_eq!(plain.seal("https://x", "url", "ep"), "https://x");
        assert!(!plain.needs_reseal("https://x"));
        let stored = sealer(Some(&key), None).seal("https://x", "url", "ep");
        assert!(plain.needs_reseal(&stored));
        assert!(plain.open(&stored, "url", "ep").is_err());
        let turning_off = sealer(None, Some(&key));
        assert_eq!(turning_off.open(&stored, "url", "ep").unwrap(), "https://x");
        assert_eq!(turning_off.seal("https://x", "url", "ep"), "https://x");
    }

    #[test]
    fn bad_keys_are_refused_naming_the_variable_and_the_length() {
        let short = STANDARD.encode([7u8; 16]);
        let err = Sealer::new(Some(&short), None).unwrap_err().to_string();
        assert!(err.contains(KEY_VAR) && err.contains("16"), "{err}");
        let err = Sealer::new(None, Some("not base64!"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(PREVIOUS_VAR), "{err}");
        // URL-safe and unpadded forms are accepted.
        let bytes = [9u8; 32];
        let a = Sealer::new(Some(&URL_SAFE_NO_PAD.encode(bytes)), None).unwrap();
        let b = Sealer::new(Some(&STANDARD.encode(bytes)), None).unwrap();
        assert_eq!(a.current_key_id(), b.current_key_id());
    }

    #[test]
    fn plain_values_are_never_mistaken_for_sealed_ones() {
        for plain in ["https://a", "whsec_x", "whsk_x", "{}", ""] {
            assert_eq!(stored_key_id(plain), None);
        }
    }
}
