//! Standard Webhooks verification, written from the specification: the
//! signed content is `{webhook-id}.{webhook-timestamp}.{body}`, the key is
//! the base64-decoded part of the secret after `whsec_`, and the header holds
//! space-separated `v1,<base64 HMAC-SHA256>` entries, any of which may match.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Checks a request's signature headers against `secret`, within `tolerance_secs` of now.
pub fn verify_signature(
    secret: &str,
    id: &str,
    timestamp: &str,
    signature_header: &str,
    body: &[u8],
    tolerance_secs: i64,
) -> Result<(), String> {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").ok_or("secret lacks whsec_")?)
        .map_err(|e| format!("secret is not base64: {e}"))?;
    let ts: i64 = timestamp
        .parse()
        .map_err(|_| format!("bad timestamp {timestamp:?}"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if (now - ts).abs() > tolerance_secs {
        return Err(format!(
            "timestamp {ts} is more than {tolerance_secs}s from now ({now})"
        ));
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    for entry in signature_header.split(' ') {
        let Some(("v1", sig)) = entry.split_once(',') else {
            continue;
        };
        let Ok(sig) = STANDARD.decode(sig) else {
            continue;
        };
        // Constant-time comparison, as the spec asks of receivers.
        if sig.len() == expected.len()
            && sig
                .iter()
                .zip(expected.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
        {
            return Ok(());
        }
    }
    Err(format!("no v1 signature in {signature_header:?} matches"))
}
