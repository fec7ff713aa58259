//! Runs the real `hookline` binary.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

/// The `hookline` binary built by this workspace (or `$HOOKLINE_BIN`).
pub fn hookline_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("HOOKLINE_BIN") {
        return bin.into();
    }
    // Test executables live in target/<profile>/deps; the binary one level up.
    let exe = std::env::current_exe().expect("current test executable");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let bin = dir.join(format!("hookline{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build -p hookline` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

/// Options for starting the engine.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub args: Vec<String>,
    /// Files to place in the plugins directory before start.
    pub plugin_files: Vec<PathBuf>,
    /// Use this data directory (kept after the engine stops) instead of a fresh one.
    pub data_dir: Option<PathBuf>,
    /// Environment variables for the engine process.
    pub env: Vec<(String, String)>,
    /// Run on the database of this engine (data directory, admin key):
    /// several processes on one PostgreSQL database.
    pub join: Option<(PathBuf, String)>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            // Fast retries and breaker probes so failure paths finish
            // within a test.
            args: [
                "--retry-schedule",
                "100ms,200ms,400ms,800ms,1s,1s,1s,1s,1s,1s,1s",
                "--breaker-cooldown",
                "100ms",
                "--breaker-max-cooldown",
                "1s",
                // Test receivers live on loopback, which the SSRF guard
                // refuses unless allow-listed.
                "--allow-network",
                "127.0.0.0/8,::1/128",
                "--durability",
                "normal",
            ]
            .map(String::from)
            .to_vec(),
            plugin_files: Vec::new(),
            data_dir: None,
            env: Vec::new(),
            join: None,
        }
    }
}

impl EngineOptions {
    /// Sets `--flag value`, replacing the value the defaults give it, if any.
    pub fn set(&mut self, flag: &str, value: &str) -> &mut EngineOptions {
        match self.args.iter().position(|a| a == flag) {
            Some(i) if i + 1 < self.args.len() => self.args[i + 1] = value.to_string(),
            _ => self.args.extend([flag.to_string(), value.to_string()]),
        }
        self
    }

    /// Removes `--flag value` from the arguments.
    pub fn unset(&mut self, flag: &str) -> &mut EngineOptions {
        if let Some(i) = self.args.iter().position(|a| a == flag) {
            let end = (i + 2).min(self.args.len());
            self.args.drain(i..end);
        }
        self
    }
}

/// A running engine; stopped with SIGTERM when dropped.
pub struct Engine {
    pub url: String,
    /// A client that sends the admin key.
    pub http: reqwest::Client,
    /// The admin key (empty when the engine runs without keys).
    pub key: String,
    /// The data directory: database, plugins, `engine.log`.
    pub data_dir: PathBuf,
    temp: Option<tempfile::TempDir>,
    /// This engine created its PostgreSQL database (and drops it).
    owns_database: bool,
    child: Option<Child>,
}

impl Engine {
    pub async fn start() -> Engine {
        Engine::start_with(EngineOptions::default()).await
    }

    pub async fn start_with(options: EngineOptions) -> Engine {
        let temp = match &options.data_dir {
            Some(_) => None,
            None => Some(tempfile::tempdir().expect("temp dir")),
        };
        let data_dir = options
            .data_dir
            .clone()
            .unwrap_or_else(|| temp.as_ref().unwrap().path().to_path_buf());
        let plugins = data_dir.join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        for file in &options.plugin_files {
            std::fs::copy(file, plugins.join(file.file_name().unwrap())).unwrap();
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join("engine.log"))
            .unwrap();
        if let Some((first, _)) = &options.join {
            crate::database::share(first, &data_dir);
        }
        let database = crate::database::database_url_for(&data_dir);
        let owns_database = database.as_ref().is_some_and(|(_, created)| *created);
        let database = database.map(|(url, _)| url);
        let mut child = Command::new(hookline_bin())
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(database.iter().flat_map(|url| ["--database-url", url]))
            .args(&options.args)
            .env("HOOKLINE_LOG", "info,hookline=debug")
            // Keys only from the options, never from the test's own environment.
            .env_remove("HOOKLINE_SECRET_KEY")
            .env_remove("HOOKLINE_SECRET_KEY_PREVIOUS")
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("failed to start hookline");
        let stdout = child.stdout.take().unwrap();
        let log_path = data_dir.join("engine.log");
        let url = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                if let Some(url) = line.strip_prefix("hookline listening on ") {
                    // Keep draining stdout so the engine never blocks on a full pipe.
                    std::thread::spawn(move || lines.for_each(drop));
                    return Some(url.to_string());
                }
            }
            None
        });
        let url = match tokio::time::timeout(Duration::from_secs(60), url).await {
            Ok(Ok(Some(url))) => url,
            _ => panic!(
                "hookline did not start; its log:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            ),
        };
        // The engine's first admin key, which it writes on first start (or
        // the key of the engine whose database it joined).
        let key = match &options.join {
            Some((_, key)) => key.clone(),
            None => std::fs::read_to_string(data_dir.join("admin.key"))
                .map(|k| k.trim().to_string())
                .unwrap_or_default(),
        };
        Engine {
            url,
            http: client(&key),
            key,
            data_dir,
            temp,
            owns_database,
            child: Some(child),
        }
    }

    /// Starts another engine process on this one's database.
    pub async fn join(&self, mut options: EngineOptions) -> Engine {
        options.join = Some((self.data_dir.clone(), self.key.clone()));
        Engine::start_with(options).await
    }

    /// The engine's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("engine.log")).unwrap_or_default()
    }

    /// Kills the process outright (SIGKILL), as a crash would, and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM without waiting.
    pub fn terminate(&self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
    }

    /// Sends SIGTERM and waits for the process to exit (SIGKILL after 30 s);
    /// returns its exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let status = child.wait().ok();
            let _ = tx.send(());
            status
        });
        if rx.recv_timeout(Duration::from_secs(30)).is_err() {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
        waiter.join().ok().flatten()
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .expect("POST");
        split(r).await
    }

    pub async fn post_raw(&self, path: &str, body: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("POST");
        split(r).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        split(
            self.http
                .get(format!("{}{path}", self.url))
                .send()
                .await
                .expect("GET"),
        )
        .await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> (u16, Value) {
        split(
            self.http
                .patch(format!("{}{path}", self.url))
                .json(body)
                .send()
                .await
                .expect("PATCH"),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> u16 {
        self.http
            .delete(format!("{}{path}", self.url))
            .send()
            .await
            .expect("DELETE")
            .status()
            .as_u16()
    }

    /// Creates an app; returns its id.
    pub async fn create_app(&self, name: &str) -> String {
        let (status, body) = self.post("/v1/apps", &json!({ "name": name })).await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_string()
    }

    /// Creates an endpoint; returns the API's answer (with `id` and `secret`).
    pub async fn create_endpoint(&self, app: &str, body: Value) -> Value {
        let (status, out) = self.post(&format!("/v1/apps/{app}/endpoints"), &body).await;
        assert_eq!(status, 201, "{out}");
        out
    }

    /// Emits events; returns the 202 answer's `data`.
    pub async fn emit(&self, app: &str, events: Value) -> Vec<Value> {
        let (status, out) = self
            .post(&format!("/v1/events?app_id={app}"), &events)
            .await;
        assert_eq!(status, 202, "{out}");
        out["data"].as_array().unwrap().clone()
    }

    /// Lists deliveries with a query string such as `app_id=…&status=delivered`.
    pub async fn deliveries(&self, query: &str) -> Vec<Value> {
        let (status, out) = self.get(&format!("/v1/deliveries?{query}&limit=250")).await;
        assert_eq!(status, 200, "{out}");
        out["data"].as_array().unwrap().clone()
    }

    /// Waits until `count` deliveries match `query`, and returns them.
    pub async fn wait_deliveries(&self, query: &str, count: usize) -> Vec<Value> {
        crate::eventually(
            &format!("{count} deliveries with {query}"),
            Duration::from_secs(30),
            || async {
                let d = self.deliveries(query).await;
                (d.len() >= count).then_some(d)
            },
        )
        .await
    }

    pub async fn attempts(&self, delivery: &str) -> Vec<Value> {
        let (status, out) = self
            .get(&format!("/v1/deliveries/{delivery}/attempts"))
            .await;
        assert_eq!(status, 200, "{out}");
        out["data"].as_array().unwrap().clone()
    }
}

async fn split(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- hookline log ---\n{}", self.log());
        }
        // A data directory of the engine's own goes with it, and so does its
        // PostgreSQL database. (One the test gave is the test's to keep.)
        if self.temp.is_some() && self.owns_database {
            crate::database::drop_database_of(&self.data_dir);
        }
    }
}

/// An HTTP client that sends `key` as its bearer token (none when empty).
pub fn client(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if !key.is_empty() {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).unwrap(),
        );
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}
