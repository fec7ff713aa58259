//! `hookline plugin new NAME`: writes a plugin crate from the template in
//! `cli/plugin_template/`. The crate is standalone (its own `[workspace]`),
//! builds for wasm32-wasip2 and passes its own tests as generated.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::cli::args::PluginNewArgs;

const FILES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("plugin_template/Cargo.toml.tmpl"),
    ),
    ("src/lib.rs", include_str!("plugin_template/lib.rs.tmpl")),
    ("README.md", include_str!("plugin_template/README.md.tmpl")),
    (".gitignore", include_str!("plugin_template/gitignore.tmpl")),
];

pub fn new_plugin(args: PluginNewArgs) -> anyhow::Result<()> {
    let name = args.name.as_str();
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !valid {
        bail!(
            "NAME {name:?} must start with a lowercase letter and hold only a-z, 0-9, - and _ (at most 64)"
        );
    }
    let crate_name = format!("hookline-plugin-{name}");
    let root = args.dir.join(&crate_name);
    if root.exists() {
        bail!(
            "{} already exists; choose another --dir or NAME",
            root.display()
        );
    }
    let sdk_dependency = match args.sdk_path.or_else(built_from_sdk) {
        Some(path) => {
            let path = path
                .canonicalize()
                .with_context(|| format!("--sdk-path {} not found", path.display()))?;
            format!("{{ path = {:?} }}", path.display().to_string())
        }
        None => format!("{:?}", env!("CARGO_PKG_VERSION")),
    };
    let vars = [
        ("{{name}}", name.to_string()),
        ("{{crate_name}}", crate_name.clone()),
        ("{{crate_underscored}}", crate_name.replace('-', "_")),
        ("{{sdk_dependency}}", sdk_dependency),
        ("{{wit_version}}", "0.1.0".to_string()),
    ];
    for (file, template) in FILES {
        let text = vars
            .iter()
            .fold(template.to_string(), |t, (k, v)| t.replace(k, v));
        let path = root.join(file);
        std::fs::create_dir_all(path.parent().unwrap_or(&root))?;
        std::fs::write(&path, text)
            .with_context(|| format!("failed to write {}", path.display()))?;
    }
    println!("created {}", root.display());
    println!(
        "next: cd {} && cargo test && cargo build --release --target wasm32-wasip2",
        root.display()
    );
    Ok(())
}

/// The SDK next to the engine's sources, when this binary was built from a checkout.
fn built_from_sdk() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    sdk.join("Cargo.toml").is_file().then_some(sdk)
}
