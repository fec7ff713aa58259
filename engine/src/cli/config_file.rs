//! `hookline.toml`: the settings of `hookline serve` in a file under version
//! control, and `hookline config check`.
//!
//! A setting's key is its flag's name (`max_in_flight` or `max-in-flight`),
//! its value a TOML string, number, boolean or array (for lists such as
//! `allow_network`). The file's values become the flags' defaults, so the
//! layers are, lowest first: built-in defaults, the file, `HOOKLINE_…`
//! environment variables, flags. clap already resolves the last three; the
//! file only moves the first. An unknown key or a value of the wrong shape
//! is refused with the key's name, before anything starts.
//!
//! `[[apps]]` tables declare apps and their `[[apps.endpoints]]`; their ids
//! and shape are checked here, their fields when the engine applies them
//! (`api::declared`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use clap::parser::ValueSource;
use clap::{Command, FromArgMatches as _};

use super::args::{Args, ConfigCheckArgs, ServeArgs};
use crate::config::{DeclaredApp, DeclaredEndpoint};

/// The environment variable naming the file (like `--config`).
pub const CONFIG_VAR: &str = "HOOKLINE_CONFIG";

/// A loaded file: setting ids and their values as flag text, and the
/// declared apps.
#[derive(Debug, Default)]
pub struct ConfigFile {
    settings: BTreeMap<String, String>,
    pub apps: Vec<DeclaredApp>,
}

/// Longest declared id.
const MAX_ID: usize = 64;

/// A declared id: `prefix` then letters, digits, `_` or `-`.
fn check_id(what: &str, id: Option<&toml::Value>, prefix: &str) -> anyhow::Result<String> {
    let id = id
        .and_then(toml::Value::as_str)
        .ok_or_else(|| anyhow!("{what}: `id` is required (a string such as \"{prefix}orders\")"))?;
    let rest = id.strip_prefix(prefix).unwrap_or("");
    if rest.is_empty()
        || id.len() > MAX_ID
        || !rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        bail!(
            "{what}: id {id:?} must be {prefix} then letters, digits, `_` or `-`, at most {MAX_ID} bytes"
        );
    }
    Ok(id.to_string())
}

/// `[[apps]]` with their `[[apps.endpoints]]`.
fn declared_apps(path: &Path, value: toml::Value) -> anyhow::Result<Vec<DeclaredApp>> {
    let at = path.display();
    let toml::Value::Array(apps) = value else {
        bail!("{at}: `apps` must be an array of tables ([[apps]])");
    };
    let mut out: Vec<DeclaredApp> = Vec::new();
    for (i, app) in apps.into_iter().enumerate() {
        let toml::Value::Table(mut app) = app else {
            bail!("{at}: apps[{i}] must be a table");
        };
        let id = check_id(&format!("{at}: apps[{i}]"), app.get("id"), "app_")?;
        if out.iter().any(|a| a.id == id) {
            bail!("{at}: app {id} is declared twice");
        }
        let name = match app.remove("name") {
            None => id.clone(),
            Some(toml::Value::String(name)) if !name.trim().is_empty() && name.len() <= 256 => name,
            Some(_) => bail!("{at}: app {id}: `name` must be 1 to 256 bytes of text"),
        };
        let endpoints = match app.remove("endpoints") {
            None => Vec::new(),
            Some(toml::Value::Array(list)) => list,
            Some(_) => {
                bail!("{at}: app {id}: `endpoints` must be an array of tables ([[apps.endpoints]])")
            }
        };
        app.remove("id");
        if let Some(key) = app.keys().next() {
            bail!("{at}: app {id}: unknown key `{key}` (an app has id, name and endpoints)");
        }
        let mut declared = DeclaredApp {
            id: id.clone(),
            name,
            endpoints: Vec::new(),
        };
        for (j, endpoint) in endpoints.into_iter().enumerate() {
            let toml::Value::Table(mut endpoint) = endpoint else {
                bail!("{at}: app {id}: endpoints[{j}] must be a table");
            };
            let ep = check_id(
                &format!("{at}: app {id}: endpoints[{j}]"),
                endpoint.get("id"),
                "ep_",
            )?;
            if out
                .iter()
                .chain([&declared])
                .any(|a| a.endpoints.iter().any(|e| e.id == ep))
            {
                bail!("{at}: endpoint {ep} is declared twice");
            }
            endpoint.remove("id");
            let fields = match serde_json::to_value(&endpoint) {
                Ok(serde_json::Value::Object(fields)) => fields,
                _ => bail!("{at}: app {id}: endpoint {ep}: not representable as JSON"),
            };
            declared.endpoints.push(DeclaredEndpoint { id: ep, fields });
        }
        out.push(declared);
    }
    Ok(out)
}

/// The ids of `serve`'s settings that a file may set, and the global ones
/// (`log_format`) of the top-level command.
fn settable(cmd: &Command) -> (Vec<String>, Vec<String>) {
    let serve = cmd
        .find_subcommand("serve")
        .expect("hookline has a serve command");
    let global: Vec<String> = cmd
        .get_arguments()
        .filter(|a| a.is_global_set())
        .map(|a| a.get_id().to_string())
        .collect();
    let own = serve
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .filter(|id| !matches!(id.as_str(), "config" | "help" | "version"))
        .filter(|id| !global.contains(id))
        .collect();
    (own, global)
}

impl ConfigFile {
    /// Reads and checks `path` against the settings `cmd` has.
    pub fn load(path: &Path, cmd: &Command) -> anyhow::Result<ConfigFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        let table: toml::Table = text
            .parse()
            .map_err(|e| anyhow!("{}: not valid TOML: {e}", path.display()))?;
        let (own, global) = settable(cmd);
        let mut settings = BTreeMap::new();
        let mut apps = Vec::new();
        for (key, value) in table {
            if key == "apps" {
                apps = declared_apps(path, value)?;
                continue;
            }
            let id = key.replace('-', "_");
            if !own.contains(&id) && !global.contains(&id) {
                let near = own
                    .iter()
                    .chain(&global)
                    .filter(|known| strsim::jaro_winkler(known, &id) > 0.85)
                    .max_by(|a, b| {
                        strsim::jaro_winkler(a, &id).total_cmp(&strsim::jaro_winkler(b, &id))
                    });
                let hint = match near {
                    Some(near) => format!(" (did you mean `{near}`?)"),
                    None => String::new(),
                };
                bail!(
                    "{}: unknown setting `{key}`{hint}; the settings are the flags of `hookline serve --help`",
                    path.display()
                );
            }
            let text = flag_text(&value).ok_or_else(|| {
                anyhow!(
                    "{}: `{key}` must be a string, number, boolean or a list of them",
                    path.display()
                )
            })?;
            settings.insert(id, text);
        }
        Ok(ConfigFile { settings, apps })
    }

    /// `cmd` with the file's values as the defaults of its settings.
    pub fn apply(&self, mut cmd: Command) -> Command {
        let (_, global) = settable(&cmd);
        for (id, value) in &self.settings {
            let value = value.clone();
            if global.contains(id) {
                cmd = cmd.mut_arg(id, |a| a.default_value(value));
            } else {
                cmd = cmd.mut_subcommand("serve", |s| s.mut_arg(id, |a| a.default_value(value)));
            }
        }
        cmd
    }

    fn sets(&self, id: &str) -> bool {
        self.settings.contains_key(id)
    }
}

/// A TOML value as the text its flag would take.
fn flag_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(n) => Some(n.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Array(items) => items
            .iter()
            .map(|item| match item {
                toml::Value::Array(_) | toml::Value::Table(_) => None,
                scalar => flag_text(scalar),
            })
            .collect::<Option<Vec<_>>>()
            .map(|items| items.join(",")),
        toml::Value::Datetime(d) => Some(d.to_string()),
        toml::Value::Table(_) => None,
    }
}

/// The config file a command line names: `--config PATH` (or
/// `--config=PATH`) after `serve` or `config check`, else `HOOKLINE_CONFIG`.
pub fn named_in(argv: &[std::ffi::OsString]) -> Option<PathBuf> {
    let words: Vec<&str> = argv.iter().filter_map(|a| a.to_str()).collect();
    // The subcommand is the first word that is neither an option nor the
    // value of the one global option that takes a value.
    let mut at = 1;
    while let Some(word) = words.get(at) {
        match *word {
            "--log-format" => at += 2,
            w if w.starts_with('-') => at += 1,
            _ => break,
        }
    }
    let takes_config = matches!(words.get(at), Some(&"serve"))
        || matches!(words.get(at..at + 2), Some(["config", "check"]));
    if !takes_config {
        return None;
    }
    let mut rest = words.iter().skip(at + 1);
    while let Some(word) = rest.next() {
        if *word == "--config" {
            return rest.next().map(PathBuf::from);
        }
        if let Some(path) = word.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os(CONFIG_VAR)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Parses the command line with the named config file applied; the apps
/// it declares.
pub fn parse() -> anyhow::Result<(Args, Vec<DeclaredApp>)> {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut cmd = <Args as clap::CommandFactory>::command();
    let mut apps = Vec::new();
    if let Some(path) = named_in(&argv) {
        let file = ConfigFile::load(&path, &cmd)?;
        cmd = file.apply(cmd);
        apps = file.apps;
    }
    let matches = cmd.get_matches_from(argv);
    let args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    Ok((args, apps))
}

/// `hookline config check`: loads the file, validates the configuration
/// `serve` would run with (file, environment and defaults), and prints every
/// setting with where its value came from, secrets masked.
pub fn check(args: ConfigCheckArgs) -> anyhow::Result<()> {
    let cmd = <Args as clap::CommandFactory>::command();
    let file = ConfigFile::load(&args.config, &cmd)?;
    let cmd = file.apply(cmd);
    let matches = cmd
        .try_get_matches_from(["hookline", "serve"])
        .map_err(|e| {
            anyhow!(
                "{}: {}",
                args.config.display(),
                e.render().to_string().trim()
            )
        })?;
    let serve = matches
        .subcommand_matches("serve")
        .expect("parsed as serve");
    let serve_args = ServeArgs::from_arg_matches(serve).map_err(|e| {
        anyhow!(
            "{}: {}",
            args.config.display(),
            e.render().to_string().trim()
        )
    })?;
    crate::config::Config::from_args(serve_args)
        .with_context(|| format!("{}: the configuration is not valid", args.config.display()))?;
    // The declared endpoints' fields, as far as they can be checked without
    // the engine (plugins, the network and the store are checked at start).
    for app in &file.apps {
        for endpoint in &app.endpoints {
            crate::api::declared::check_fields(&endpoint.fields).map_err(|e| {
                anyhow!(
                    "{}: app {} endpoint {}: {e}",
                    args.config.display(),
                    app.id,
                    endpoint.id
                )
            })?;
        }
    }

    let (own, global) = settable(&<Args as clap::CommandFactory>::command());
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::NOTHING)
        .set_header(["SETTING", "VALUE", "FROM"]);
    for id in own.iter().chain(&global) {
        let from = if global.contains(id) { &matches } else { serve };
        let value = from
            .get_raw(id)
            .map(|values| {
                values
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_else(|| "-".into());
        let source = match from.value_source(id) {
            Some(ValueSource::EnvVariable) => "env",
            Some(ValueSource::CommandLine) => "flag",
            Some(ValueSource::DefaultValue) if file.sets(id) => "file",
            Some(ValueSource::DefaultValue) => "default",
            _ => "-",
        };
        table.add_row([id.clone(), mask(id, &value), source.to_string()]);
    }
    let endpoints: usize = file.apps.iter().map(|a| a.endpoints.len()).sum();
    println!(
        "{}: valid; declares {} apps and {endpoints} endpoints\n\n{table}",
        args.config.display(),
        file.apps.len()
    );
    Ok(())
}

/// A value as shown: a password in a URL is masked.
fn mask(id: &str, value: &str) -> String {
    if id == "database_url"
        && let Ok(mut url) = url::Url::parse(value)
        && url.password().is_some()
    {
        let _ = url.set_password(Some("***"));
        return url.to_string();
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hookline.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn serve_with(file: &str, argv: &[&str]) -> ServeArgs {
        let (_dir, path) = write(file);
        let cmd = Args::command();
        let cmd = ConfigFile::load(&path, &cmd).unwrap().apply(cmd);
        let matches = cmd.try_get_matches_from(argv).unwrap();
        ServeArgs::from_arg_matches(matches.subcommand_matches("serve").unwrap()).unwrap()
    }

    #[test]
    fn the_file_sets_defaults_that_flags_still_override() {
        let file = r#"
            max_in_flight = 512
            request-timeout = "20s"
            allow_network = ["127.0.0.0/8", "::1"]
            insecure_no_auth = true
        "#;
        let args = serve_with(file, &["hookline", "serve"]);
        assert_eq!(args.max_in_flight, 512);
        assert_eq!(args.request_timeout, std::time::Duration::from_secs(20));
        assert_eq!(args.allow_network, ["127.0.0.0/8", "::1"]);
        assert!(args.insecure_no_auth);
        let args = serve_with(file, &["hookline", "serve", "--max-in-flight", "64"]);
        assert_eq!(args.max_in_flight, 64);
        assert_eq!(args.request_timeout, std::time::Duration::from_secs(20));
    }

    #[test]
    fn an_unknown_key_or_a_bad_value_is_refused_by_name() {
        let cmd = Args::command();
        let (_dir, path) = write("max_inflight = 3\n");
        let e = ConfigFile::load(&path, &cmd).unwrap_err().to_string();
        assert!(e.contains("unknown setting `max_inflight`"), "{e}");
        assert!(e.contains("did you mean `max_in_flight`"), "{e}");
        let (_dir, path) = write("[listen]\nport = 3\n");
        let e = ConfigFile::load(&path, &cmd).unwrap_err().to_string();
        assert!(e.contains("`listen` must be a string"), "{e}");
        let (_dir, path) = write("listen = \n");
        let e = ConfigFile::load(&path, &cmd).unwrap_err().to_string();
        assert!(e.contains("not valid TOML"), "{e}");
    }

    #[test]
    fn the_file_is_named_by_flag_or_environment_for_serve_and_config_check() {
        let argv = |words: &[&str]| words.iter().map(Into::into).collect::<Vec<_>>();
        assert_eq!(
            named_in(&argv(&["hookline", "serve", "--config", "a.toml"])),
            Some("a.toml".into())
        );
        assert_eq!(
            named_in(&argv(&["hookline", "config", "check", "--config=b.toml"])),
            Some("b.toml".into())
        );
        // `plugin test --config` is a plugin's config, not this file.
        assert_eq!(
            named_in(&argv(&[
                "hookline", "plugin", "test", "x.wasm", "--config", "{}"
            ])),
            None
        );
        // Global options may come first.
        for first in [&["--log-format", "json"][..], &["--log-format=json"][..]] {
            let mut words = vec!["hookline"];
            words.extend(first);
            words.extend(["serve", "--config", "c.toml"]);
            assert_eq!(named_in(&argv(&words)), Some("c.toml".into()), "{words:?}");
        }
    }

    #[test]
    fn every_setting_is_in_the_configuration_reference() {
        let doc = include_str!("../../../docs/operations.md");
        let (own, global) = settable(&Args::command());
        let missing: Vec<&String> = own
            .iter()
            .chain(&global)
            .filter(|id| !doc.contains(&format!("| `{id}` |")))
            .collect();
        assert!(
            missing.is_empty(),
            "docs/operations.md's configuration reference lacks {missing:?}"
        );
    }

    #[test]
    fn a_password_in_the_database_url_is_masked() {
        assert_eq!(
            mask("database_url", "postgres://u:secret@db/h"),
            "postgres://u:***@db/h"
        );
        assert_eq!(mask("listen", "127.0.0.1:1"), "127.0.0.1:1");
    }
}
