//! Standard Webhooks signing of `{id}.{timestamp}.{body}`:
//!
//! - symmetric: `v1,<base64 HMAC-SHA256>`, keyed with the bytes behind a
//!   `whsec_` secret;
//! - asymmetric: `v1a,<base64 ed25519 signature>`, with the key pair behind a
//!   `whsk_` secret (the 32-byte seed, or seed and public key as 64 bytes);
//!   receivers verify with the `whpk_` public key.
//!
//! The prefix says which, so an endpoint's secret alone picks the scheme.
//! Several signatures are sent space-separated (during a secret rotation).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Prefix of a symmetric Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Prefix of an ed25519 secret key, and of its public key.
pub const ED25519_SECRET_PREFIX: &str = "whsk_";
pub const ED25519_PUBLIC_PREFIX: &str = "whpk_";
/// Secret key sizes the spec allows (bytes).
pub const SECRET_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// A key that signs requests.
#[derive(Clone)]
pub enum SigningKey {
    Hmac(Vec<u8>),
    Ed25519(Box<ed25519_dalek::SigningKey>),
}

// Never print key material.
impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

impl SigningKey {
    /// Parses `whsec_<base64>` or `whsk_<base64>`; the error says what is
    /// wrong, never the secret.
    pub fn parse(secret: &str) -> Result<SigningKey, String> {
        if let Some(encoded) = secret.strip_prefix(ED25519_SECRET_PREFIX) {
            return parse_ed25519(encoded);
        }
        let encoded = secret.strip_prefix(SECRET_PREFIX).ok_or_else(|| {
            format!("must start with {SECRET_PREFIX} (HMAC) or {ED25519_SECRET_PREFIX} (ed25519)")
        })?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| format!("the part after {SECRET_PREFIX} must be standard base64"))?;
        if !SECRET_BYTES.contains(&key.len()) {
            return Err(format!(
                "must encode {} to {} bytes, got {}",
                SECRET_BYTES.start(),
                SECRET_BYTES.end(),
                key.len()
            ));
        }
        Ok(SigningKey::Hmac(key))
    }

    /// A new random ed25519 secret key in `whsk_` form (the 32-byte seed).
    pub fn generate_ed25519() -> String {
        let seed: [u8; 32] = rand::random();
        format!("{ED25519_SECRET_PREFIX}{}", STANDARD.encode(seed))
    }

    /// The `whpk_` public key receivers verify with, for an ed25519 key.
    pub fn public_key(&self) -> Option<String> {
        match self {
            SigningKey::Hmac(_) => None,
            SigningKey::Ed25519(k) => Some(format!(
                "{ED25519_PUBLIC_PREFIX}{}",
                STANDARD.encode(k.verifying_key().as_bytes())
            )),
        }
    }

    /// A new random secret in `whsec_` form (32 bytes).
    pub fn generate() -> String {
        let key: [u8; 32] = rand::random();
        format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
    }

    /// `v1,<signature>` or `v1a,<signature>` of one message.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        match self {
            SigningKey::Hmac(key) => {
                let mut mac =
                    Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any size");
                mac.update(msg_id.as_bytes());
                mac.update(b".");
                mac.update(timestamp.to_string().as_bytes());
                mac.update(b".");
                mac.update(body);
                format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
            }
            SigningKey::Ed25519(key) => {
                use ed25519_dalek::Signer as _;
                let mut content = Vec::with_capacity(msg_id.len() + body.len() + 24);
                content.extend_from_slice(msg_id.as_bytes());
                content.push(b'.');
                content.extend_from_slice(timestamp.to_string().as_bytes());
                content.push(b'.');
                content.extend_from_slice(body);
                let signature = key.sign(&content);
                format!("v1a,{}", STANDARD.encode(signature.to_bytes()))
            }
        }
    }
}

fn parse_ed25519(encoded: &str) -> Result<SigningKey, String> {
    let bytes = STANDARD
        .decode(encoded)
        .map_err(|_| format!("the part after {ED25519_SECRET_PREFIX} must be standard base64"))?;
    let seed: [u8; 32] = match bytes.len() {
        32 => bytes.as_slice().try_into().expect("32 bytes"),
        // The libsodium form: the seed, then the public key it makes.
        64 => {
            let seed: [u8; 32] = bytes[..32].try_into().expect("32 bytes");
            let key = ed25519_dalek::SigningKey::from_bytes(&seed);
            if key.verifying_key().as_bytes() != &bytes[32..] {
                return Err("the 64-byte form's public half does not match its seed".into());
            }
            seed
        }
        n => {
            return Err(format!(
                "must encode a 32-byte ed25519 seed (or 64 bytes, seed and public key), got {n}"
            ));
        }
    };
    Ok(SigningKey::Ed25519(Box::new(
        ed25519_dalek::SigningKey::from_bytes(&seed),
    )))
}

/// The `webhook-signature` header value: every key's signature, space-separated.
pub fn signature_header(keys: &[SigningKey], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|k| k.sign(msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why a request's signature did not verify (`hookline verify`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("the key: {0}")]
    Key(String),
    #[error("webhook-signature has no v1 or v1a signature")]
    NoSignature,
    #[error(
        "no signature matches: the body, webhook-id or webhook-timestamp differ from what was signed, or the key is another"
    )]
    Mismatch,
    #[error(
        "webhook-timestamp is {0} s away from now, more than the {1} s allowed (a replay, or a clock off)"
    )]
    Stale(i64, i64),
}

/// Verifies a request as a Standard Webhooks receiver would: `key` is the
/// endpoint's `whsec_` secret, its `whsk_` secret or its `whpk_` public
/// key; `header` is `webhook-signature` (space-separated `v1,…`/`v1a,…`).
/// With `tolerance`, the timestamp must be that close to `now` (seconds).
/// Returns which of the header's signatures matched (0-based).
pub fn verify(
    key: &str,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
    now: i64,
    tolerance: Option<i64>,
) -> Result<usize, VerifyError> {
    if let Some(tolerance) = tolerance
        && (now - timestamp).abs() > tolerance
    {
        return Err(VerifyError::Stale(now - timestamp, tolerance));
    }
    let verifying: Result<Verifier, String> = match key.strip_prefix(ED25519_PUBLIC_PREFIX) {
        Some(encoded) => STANDARD
            .decode(encoded)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .and_then(|b| ed25519_dalek::VerifyingKey::from_bytes(&b).ok())
            .map(Verifier::Ed25519)
            .ok_or_else(|| {
                format!("{ED25519_PUBLIC_PREFIX}… must encode a 32-byte ed25519 public key")
            }),
        None => SigningKey::parse(key).map(|k| match k {
            SigningKey::Hmac(bytes) => Verifier::Hmac(bytes),
            SigningKey::Ed25519(k) => Verifier::Ed25519(k.verifying_key()),
        }),
    };
    let verifier = verifying.map_err(VerifyError::Key)?;
    let content = [
        msg_id.as_bytes(),
        b".",
        timestamp.to_string().as_bytes(),
        b".",
        body,
    ]
    .concat();
    let mut any = false;
    for (i, part) in header.split_whitespace().enumerate() {
        let Some((version, encoded)) = part.split_once(',') else {
            continue;
        };
        let Ok(signature) = STANDARD.decode(encoded) else {
            continue;
        };
        let matched = match (&verifier, version) {
            (Verifier::Hmac(key), "v1") => {
                any = true;
                let mut mac =
                    Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any size");
                mac.update(&content);
                // Constant-time comparison.
                mac.verify_slice(&signature).is_ok()
            }
            (Verifier::Ed25519(key), "v1a") => {
                any = true;
                ed25519_dalek::Signature::from_slice(&signature)
                    .is_ok_and(|s| key.verify_strict(&content, &s).is_ok())
            }
            _ => false,
        };
        if matched {
            return Ok(i);
        }
    }
    Err(if any {
        VerifyError::Mismatch
    } else {
        VerifyError::NoSignature
    })
}

enum Verifier {
    Hmac(Vec<u8>),
    Ed25519(ed25519_dalek::VerifyingKey),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the Standard Webhooks specification's test vectors.
    #[test]
    fn matches_the_spec_test_vector() {
        let key = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = key.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn ed25519_keys_sign_v1a_and_show_their_public_key() {
        let secret = SigningKey::generate_ed25519();
        let key = SigningKey::parse(&secret).unwrap();
        let public = key.public_key().unwrap();
        assert!(public.starts_with("whpk_"));
        let sig = key.sign("msg_1", 1, b"x");
        assert!(sig.starts_with("v1a,"), "{sig}");
        assert_eq!(STANDARD.decode(&sig[4..]).unwrap().len(), 64);
        // The 64-byte form names the same key.
        let seed = STANDARD.decode(&secret[5..]).unwrap();
        let public_bytes = STANDARD.decode(&public[5..]).unwrap();
        let long = format!("whsk_{}", STANDARD.encode([seed, public_bytes].concat()));
        assert_eq!(
            SigningKey::parse(&long).unwrap().sign("msg_1", 1, b"x"),
            sig
        );
        assert!(
            SigningKey::parse(&SigningKey::generate())
                .unwrap()
                .public_key()
                .is_none()
        );
    }

    #[test]
    fn verification_accepts_what_was_signed_and_nothing_else() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let (id, ts, body) = (
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        let header = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert_eq!(verify(secret, id, ts, body, header, ts, Some(300)), Ok(0));
        // Second of two signatures (a rotation), and an unknown version skipped.
        let two = format!("v1,AAAA v2,xyz {header}");
        assert_eq!(verify(secret, id, ts, body, &two, ts, None), Ok(2));
        assert_eq!(
            verify(secret, id, ts, b"{}", header, ts, None),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(secret, "msg_other", ts, body, header, ts, None),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(secret, id, ts, body, header, ts + 301, Some(300)),
            Err(VerifyError::Stale(301, 300))
        );
        assert_eq!(
            verify(secret, id, ts, body, "v1a,AAAA", ts, None),
            Err(VerifyError::NoSignature)
        );
        assert!(matches!(
            verify("nope", id, ts, body, header, ts, None),
            Err(VerifyError::Key(_))
        ));
    }

    #[test]
    fn ed25519_signatures_verify_with_the_public_key() {
        let key = SigningKey::parse(&SigningKey::generate_ed25519()).unwrap();
        let public = key.public_key().unwrap();
        let header = key.sign("msg_1", 7, b"body");
        assert_eq!(
            verify(&public, "msg_1", 7, b"body", &header, 7, None),
            Ok(0)
        );
        assert_eq!(
            verify(&public, "msg_1", 7, b"bodY", &header, 7, None),
            Err(VerifyError::Mismatch)
        );
        let other = SigningKey::parse(&SigningKey::generate_ed25519()).unwrap();
        assert_eq!(
            verify(
                &other.public_key().unwrap(),
                "msg_1",
                7,
                b"body",
                &header,
                7,
                None
            ),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn rotation_sends_both_signatures() {
        let a = SigningKey::parse(&SigningKey::generate()).unwrap();
        let b = SigningKey::parse(&SigningKey::generate()).unwrap();
        let header = signature_header(&[a.clone(), b.clone()], "msg_1", 1, b"x");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts, [a.sign("msg_1", 1, b"x"), b.sign("msg_1", 1, b"x")]);
    }

    #[test]
    fn bad_secrets_say_why() {
        assert!(SigningKey::parse("abc").unwrap_err().contains("whsec_"));
        assert!(
            SigningKey::parse("whsk_c2hvcnQ=")
                .unwrap_err()
                .contains("32-byte")
        );
        assert!(
            SigningKey::parse("whsec_!!!")
                .unwrap_err()
                .contains("base64")
        );
        assert!(
            SigningKey::parse("whsec_c2hvcnQ=")
                .unwrap_err()
                .contains("24 to 64")
        );
        assert!(
            !format!("{:?}", SigningKey::parse(&SigningKey::generate()).unwrap()).contains("whsec")
        );
    }
}
