//! `hookline verify`: checks a request's Standard Webhooks signature the way
//! a receiver must, for anyone writing or debugging one.

use std::io::Read as _;
use std::path::Path;

use anyhow::Context as _;

use crate::cli::args::VerifyArgs;
use crate::delivery::signing;

/// The signature did not verify: the command exits with status 1.
#[derive(Debug, thiserror::Error)]
#[error("invalid: {0}")]
pub struct Invalid(pub String);

pub fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let headers = match &args.headers {
        Some(path) => parse_headers(
            &std::fs::read_to_string(path)
                .with_context(|| format!("failed to read --headers {}", path.display()))?,
        ),
        None => Vec::new(),
    };
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let missing = |name: &str, flag: &str| {
        anyhow::anyhow!("no {name}: give --{flag}, or --headers with a `{name}:` line")
    };
    let id = args
        .id
        .clone()
        .or_else(|| header("webhook-id"))
        .ok_or_else(|| missing("webhook-id", "id"))?;
    let timestamp = match args.timestamp {
        Some(t) => t,
        None => header("webhook-timestamp")
            .ok_or_else(|| missing("webhook-timestamp", "timestamp"))?
            .trim()
            .parse()
            .context("webhook-timestamp must be Unix seconds")?,
    };
    let signature = args
        .signature
        .clone()
        .or_else(|| header("webhook-signature"))
        .ok_or_else(|| missing("webhook-signature", "signature"))?;
    let body = read_body(&args.body)?;
    let now = crate::id::now_ms() / 1000;
    let tolerance = (!args.ignore_timestamp).then_some(args.tolerance.as_secs() as i64);
    match signing::verify(&args.key, &id, timestamp, &body, &signature, now, tolerance) {
        Ok(i) => {
            let total = signature.split_whitespace().count();
            println!(
                "valid: signature {} of {total} matches ({} bytes of body, webhook-id {id})",
                i + 1,
                body.len()
            );
            Ok(())
        }
        Err(signing::VerifyError::Key(why)) => anyhow::bail!("--key: {why}"),
        Err(e) => Err(Invalid(e.to_string()).into()),
    }
}

/// `name: value` lines; anything else (a request line, blank lines) is skipped.
fn parse_headers(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, _)| !name.trim().is_empty() && !name.contains(' '))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect()
}

fn read_body(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut body = Vec::new();
        std::io::stdin()
            .read_to_end(&mut body)
            .context("failed to read the body from stdin")?;
        return Ok(body);
    }
    std::fs::read(path).with_context(|| format!("failed to read --body {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_come_from_a_request_dump() {
        let dump = "POST /hook HTTP/1.1\nwebhook-id: msg_1\nWebhook-Timestamp:  17 \n\n";
        let h = parse_headers(dump);
        assert!(h.contains(&("webhook-id".into(), "msg_1".into())));
        assert!(h.contains(&("Webhook-Timestamp".into(), "17".into())));
        assert!(!h.iter().any(|(n, _)| n.starts_with("POST")));
    }
}
