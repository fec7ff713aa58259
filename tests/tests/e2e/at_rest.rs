//! Endpoint credentials encrypted at rest with `HOOKLINE_SECRET_KEY`: the
//! database files never hold a URL, secret or plugin configuration in the
//! clear, the engine refuses to start without the key that opens them, and
//! the documented rotation (new key current, old key in
//! `HOOKLINE_SECRET_KEY_PREVIOUS`, then the old key dropped) keeps every
//! endpoint delivering with verifiable signatures. The checks read the
//! SQLite files byte for byte, as someone holding a copy of them would.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hookline_tests::{Engine, EngineOptions, Receiver, hookline_bin, verify_signature};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn new_key() -> String {
    let out = Command::new(hookline_bin())
        .args(["secret-key", "new"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Every file of the database (main file, WAL, shared memory) as bytes.
fn database_bytes(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for name in ["hookline.db", "hookline.db-wal", "hookline.db-shm"] {
        if let Ok(bytes) = std::fs::read(dir.join(name)) {
            all.extend(bytes);
        }
    }
    assert!(!all.is_empty(), "no database in {}", dir.display());
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn options(dir: &Path, env: &[(&str, &str)]) -> EngineOptions {
    let mut options = EngineOptions {
        data_dir: Some(dir.to_path_buf()),
        ..EngineOptions::default()
    };
    options.env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    options
}

/// `hookline secret-key status` for the data directory, with these keys.
fn key_status(dir: &Path, env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(hookline_bin())
        .args(["secret-key", "status", "--data-dir"])
        .arg(dir)
        .env_remove("HOOKLINE_SECRET_KEY")
        .env_remove("HOOKLINE_SECRET_KEY_PREVIOUS")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Emits one event and checks that it arrives signed with `secret`.
async fn delivers(engine: &Engine, app: &str, receiver: &mut Receiver, id: &str, secret: &str) {
    engine
        .emit(app, json!({ "id": id, "source": "s", "type": "t" }))
        .await;
    let r = receiver.next(WAIT).await;
    assert!(
        r.path.ends_with("/T0PSECRETPATH"),
        "the stored URL opened to the same path: {}",
        r.path
    );
    verify_signature(
        secret,
        r.header("webhook-id"),
        r.header("webhook-timestamp"),
        r.header("webhook-signature"),
        &r.body,
        300,
    )
    .expect("signed with the endpoint's secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_sealed_on_disk_and_survive_a_key_rotation() {
    hookline_tests::on_backend!(crate::BACKEND);
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::start().await;
    let url = format!("{}/hooks/T0PSECRETPATH", receiver.url);
    let (k1, k2) = (new_key(), new_key());

    // 1. In the clear first (no key): the URL is in the file, as before.
    let mut engine = Engine::start_with(options(dir.path(), &[])).await;
    let app = engine.create_app("at-rest").await;
    let endpoint = engine
        .create_endpoint(
            &app,
            json!({
                "url": url,
                "plugin": "webhook",
                "plugin_config": { "content_type": "application/cloudevents+json" },
            }),
        )
        .await;
    let id = endpoint["id"].as_str().unwrap().to_string();
    // Its URL changed once: no copy of the earlier one may survive either.
    let (status, _) = engine
        .patch(
            &format!("/v1/apps/{app}/endpoints/{id}"),
            &json!({ "url": format!("{}/hooks/FORMERPATH", receiver.url) }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = engine
        .patch(
            &format!("/v1/apps/{app}/endpoints/{id}"),
            &json!({ "url": url }),
        )
        .await;
    assert_eq!(status, 200);
    let mut secret = endpoint["secret"].as_str().unwrap().to_string();
    delivers(&engine, &app, &mut receiver, "plain", &secret).await;
    // A second endpoint, deleted: its credentials are sealed too.
    let gone = engine
        .create_endpoint(
            &app,
            json!({ "url": format!("{}/hooks/DELETEDPATH", receiver.url) }),
        )
        .await;
    let status = engine
        .delete(&format!(
            "/v1/apps/{app}/endpoints/{}",
            gone["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 204);
    engine.stop();
    let bytes = database_bytes(dir.path());
    assert!(contains(&bytes, "T0PSECRETPATH"));

    // 2. Turned on with k1: every credential sealed, and nothing of them
    // left anywhere in the files (not in free pages, not in the WAL).
    let mut engine = Engine::start_with(options(dir.path(), &[("HOOKLINE_SECRET_KEY", &k1)])).await;
    assert!(
        engine.log().contains("encrypted at rest"),
        "{}",
        engine.log()
    );
    delivers(&engine, &app, &mut receiver, "sealed-1", &secret).await;
    // The API still shows the owner their endpoint as it was given.
    let (_, shown) = engine.get(&format!("/v1/apps/{app}/endpoints/{id}")).await;
    assert_eq!(shown["url"], Value::String(url.clone()));
    let (_, shown_secret) = engine
        .get(&format!("/v1/apps/{app}/endpoints/{id}/secret"))
        .await;
    assert_eq!(shown_secret["secret"], Value::String(secret.clone()));
    // A rotation during encryption: both secrets sealed.
    let (status, rotated) = engine
        .post(
            &format!("/v1/apps/{app}/endpoints/{id}/secret/rotate"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let first_secret = std::mem::replace(&mut secret, rotated["secret"].as_str().unwrap().into());
    delivers(&engine, &app, &mut receiver, "sealed-2", &secret).await;
    engine.stop();
    let bytes = database_bytes(dir.path());
    for clear in [
        "T0PSECRETPATH",
        "DELETEDPATH",
        "FORMERPATH",
        "content_type",
        &secret["whsec_".len()..],
        &first_secret["whsec_".len()..],
    ] {
        assert!(
            !contains(&bytes, clear),
            "{clear:?} is in the database files in the clear"
        );
    }
    assert!(contains(&bytes, "hlsealed:1:"));
    let (ok, text) = key_status(dir.path(), &[("HOOKLINE_SECRET_KEY", &k1)]);
    assert!(
        ok && text.contains("(current)") && !text.contains("plain"),
        "{text}"
    );

    // 3. Without the key the engine refuses to start, naming what is missing,
    // and changes nothing.
    let before = key_status(dir.path(), &[("HOOKLINE_SECRET_KEY", &k1)]);
    let out = Command::new(hookline_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("HOOKLINE_SECRET_KEY")
        .env_remove("HOOKLINE_SECRET_KEY_PREVIOUS")
        .env("HOOKLINE_LOG", "off")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HOOKLINE_SECRET_KEY") && err.contains("sealed with key"),
        "{err}"
    );
    assert_eq!(
        key_status(dir.path(), &[("HOOKLINE_SECRET_KEY", &k1)]),
        before,
        "a refused start changes nothing"
    );
    // A wrong key is refused the same way.
    let (ok, text) = key_status(dir.path(), &[("HOOKLINE_SECRET_KEY", &k2)]);
    assert!(!ok && text.contains("NOT among the keys"), "{text}");

    // 4. Rotation: k2 current, k1 previous. Everything moves to k2 at start.
    let mut engine = Engine::start_with(options(
        dir.path(),
        &[
            ("HOOKLINE_SECRET_KEY", &k2),
            ("HOOKLINE_SECRET_KEY_PREVIOUS", &k1),
        ],
    ))
    .await;
    delivers(&engine, &app, &mut receiver, "rotating", &secret).await;
    engine.stop();
    let (ok, text) = key_status(dir.path(), &[("HOOKLINE_SECRET_KEY", &k2)]);
    assert!(ok && text.contains("(current)"), "{text}");

    // 5. k1 dropped: k2 alone opens everything.
    let mut engine = Engine::start_with(options(dir.path(), &[("HOOKLINE_SECRET_KEY", &k2)])).await;
    delivers(&engine, &app, &mut receiver, "rotated", &secret).await;
    engine.stop();

    // 6. Turned off: no current key, k2 previous: back in the clear.
    let mut engine = Engine::start_with(options(
        dir.path(),
        &[("HOOKLINE_SECRET_KEY_PREVIOUS", &k2)],
    ))
    .await;
    delivers(&engine, &app, &mut receiver, "clear-again", &secret).await;
    engine.stop();
    let (ok, text) = key_status(dir.path(), &[]);
    assert!(
        ok && text.contains("plain") && !text.contains("sealed with"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_key_is_refused_naming_the_variable() {
    hookline_tests::on_backend!(crate::BACKEND);
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(hookline_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("HOOKLINE_SECRET_KEY", "c2hvcnQ=")
        .env("HOOKLINE_LOG", "off")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HOOKLINE_SECRET_KEY") && err.contains("32 bytes") && err.contains("5"),
        "{err}"
    );
    assert!(
        !dir.path().join("hookline.db").exists(),
        "refused before the store is created"
    );
}
