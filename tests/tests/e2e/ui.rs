//! The dashboard at `/ui`, driven in headless Chromium through chromedriver
//! (Debian's `chromium` and `chromium-driver`, installed by `.ci/run`): sign
//! in with a key, see an endpoint's health, send it a test event, find a failed delivery, read its
//! attempt, retry it and watch it delivered; screenshots are kept in
//! `target/test-artifacts/dashboard-*.png`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hookline_tests::{Engine, Receiver, eventually};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// Says why the test cannot run here; fails in CI (`CI` set, or
/// `HOOKLINE_BROWSER_TESTS=required`), where `.ci/run` installs the browser.
fn missing(what: &str) {
    let message = format!(
        "{what} is not installed (Debian: apt-get install chromium chromium-driver); .ci/run installs it"
    );
    if std::env::var_os("CI").is_some()
        || std::env::var("HOOKLINE_BROWSER_TESTS").is_ok_and(|v| v == "required")
    {
        panic!("{message}");
    }
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED ui: {message}");
}

fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A chromedriver on a free loopback port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    async fn start(binary: &PathBuf) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let status = format!("{url}/status");
        eventually("chromedriver to answer", WAIT, || {
            let status = status.clone();
            async move {
                reqwest::get(&status)
                    .await
                    .ok()
                    .filter(|r| r.status() == 200)
            }
        })
        .await;
        Driver { child, url }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &Driver, chromium: &PathBuf) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

/// The text of the first element `css` matches, once there is one. The page
/// re-renders its view as data arrives: an element found just before that
/// is stale, and is looked up again.
async fn text(client: &Client, css: &str) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let found = client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await;
        let read = match found {
            Ok(element) => element.text().await,
            Err(e) => panic!("no {css} ({e}); the page shows: {}", shown(client).await),
        };
        match read {
            Ok(text) => return text,
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::task::yield_now().await;
            }
            Err(e) => panic!("{css}: {e}"),
        }
    }
}

/// Clicks the first element `css` matches, looking it up again if it went
/// stale before the click.
async fn click(client: &Client, css: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let found = client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await;
        let clicked = match found {
            Ok(element) => element.click().await,
            Err(e) => panic!("no {css} ({e}); the page shows: {}", shown(client).await),
        };
        match clicked {
            Ok(()) => return,
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::task::yield_now().await;
            }
            Err(e) => panic!("cannot click {css}: {e}"),
        }
    }
}

/// Keeps what the browser shows in `target/test-artifacts/<name>`.
async fn screenshot(client: &Client, name: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let png = client.screenshot().await.unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    std::fs::write(dir.join(name), &png).unwrap();
}

/// What the page shows now, for a failure's message.
async fn shown(client: &Client) -> String {
    match client.find(Locator::Css("body")).await {
        Ok(body) => body.text().await.unwrap_or_default(),
        Err(e) => format!("(nothing: {e})"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_failed_delivery_and_retries_it() {
    hookline_tests::on_backend!(crate::BACKEND);
    let (Some(chromium), Some(chromedriver)) = (find("chromium"), find("chromedriver")) else {
        missing("chromium or chromedriver");
        return;
    };
    // The receiver is down for the first request only.
    let mut receiver = Receiver::start().await;
    receiver.script(&[(503, "maintenance")]);
    let engine = Engine::start().await;
    // A name with markup: the page must show it as text.
    let app = engine.create_app("<b>shop</b>").await;
    let endpoint = engine
        .create_endpoint(
            &app,
            json!({ "url": format!("{}/hook", receiver.url), "retry_schedule": [], "ordered": true }),
        )
        .await;
    let endpoint = endpoint["id"].as_str().unwrap().to_string();
    let events: Vec<serde_json::Value> = (0..3)
        .map(|i| json!({ "id": format!("u{i}"), "source": "ui", "type": "order.created", "data": { "i": i } }))
        .collect();
    engine.emit(&app, serde_json::Value::Array(events)).await;
    for _ in 0..3 {
        receiver.next(WAIT).await;
    }
    let failed = engine
        .wait_deliveries(&format!("app_id={app}&status=failed"), 1)
        .await;
    let failed = failed[0]["id"].as_str().unwrap().to_string();

    let driver = Driver::start(&chromedriver).await;
    let client = browser(&driver, &chromium).await;
    client.goto(&format!("{}/ui", engine.url)).await.unwrap();

    // Sign in with the key.
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#key"))
        .await
        .unwrap()
        .send_keys(&engine.key)
        .await
        .unwrap();
    click(&client, "#login").await;

    // The apps, the app's endpoint with its health and chart.
    let row = format!("tr[data-id='{app}']");
    assert_eq!(text(&client, &format!("{row} a")).await, "<b>shop</b>");
    click(&client, &format!("{row} a")).await;
    let row = format!("tr[data-id='{endpoint}']");
    let health = text(&client, &row).await;
    assert!(health.contains("closed"), "{health}");
    assert!(health.contains("66.7 %"), "{health}");
    client
        .find(Locator::Css(&format!("{row} svg.chart rect.failed")))
        .await
        .expect("the chart shows the failure");
    // A test event from the endpoint's row: the attempt is shown at once.
    click(&client, &format!("{row} button.test")).await;
    eventually("the test's attempt to show", WAIT, || async {
        let notice = text(&client, "#notice").await;
        (notice.contains("success (200)")).then_some(())
    })
    .await;
    assert_eq!(receiver.next(WAIT).await.json()["type"], "hookline.test");
    screenshot(&client, "dashboard-app.png").await;

    // The failed delivery, found by status, with its attempt.
    click(&client, "#nav-deliveries").await;
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#search-status"))
        .await
        .unwrap()
        .select_by_value("failed")
        .await
        .unwrap();
    click(&client, "#search").await;
    let listed = text(&client, &format!("tr[data-id='{failed}']")).await;
    assert!(listed.contains("failed"), "{listed}");
    let rows = client.find_all(Locator::Css("tbody tr")).await.unwrap();
    assert_eq!(rows.len(), 1, "only the failed delivery is listed");
    click(&client, &format!("tr[data-id='{failed}'] a")).await;
    assert_eq!(text(&client, "#delivery-status").await, "failed");
    let attempt = text(&client, "tr[data-id='1']").await;
    assert!(
        attempt.contains("503") && attempt.contains("maintenance"),
        "{attempt}"
    );

    // Retry: the receiver is up now, and the page shows it delivered.
    click(&client, "#retry").await;
    eventually(
        "the retried delivery to show as delivered",
        WAIT,
        || async {
            if text(&client, "#delivery-status").await == "delivered" {
                return Some(());
            }
            click(&client, "#refresh").await;
            None
        },
    )
    .await;
    receiver.next(WAIT).await;

    let page = shown(&client).await;
    assert!(
        !page.contains("null") && !page.contains("[object"),
        "{page}"
    );
    screenshot(&client, "dashboard-delivery.png").await;

    // The plugins, with their state.
    click(&client, "#nav-plugins").await;
    let webhook = text(&client, "tr[data-id='webhook']").await;
    assert!(webhook.contains("active"), "{webhook}");

    // Signing out forgets the key.
    click(&client, "#logout").await;
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#login-form:not([hidden])"))
        .await
        .unwrap();
    client.close().await.unwrap();
}
