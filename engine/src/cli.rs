//! The `hookline` command line: `serve`, `plugin new|test|bench|list|lift`,
//! `bench`, `secret-key new|status`, `migrate`, `backup`, `copy-store`, `config check`,
//! `verify`, `completions`, and the commands over a running engine's API (`apps`,
//! `endpoints`, `events`, `deliveries`, `operations`, `keys`).

mod api_args;
mod api_client;
mod api_commands;
pub mod args;
mod backup;
mod bench;
mod claim_bench;
mod config_file;
mod copy_store;
mod migrate;

mod plugin;
mod plugin_bench;
mod scaffold;
mod secret_key;
mod serve;
mod table;
mod verify;

use std::process::ExitCode;

/// Entry point of the `hookline` binary.
pub fn main() -> ExitCode {
    // The config file's values are the defaults of serve's flags.
    let (args, declared) = match config_file::parse() {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("hookline: {e:#}");
            return ExitCode::from(2);
        }
    };
    init_logging(args.log_format);
    let result = match args.command {
        args::Command::Serve(serve) => serve::run(*serve, declared),
        args::Command::Plugin(group) => match group.action {
            args::PluginCommand::Test(test) => plugin::test(test),
            args::PluginCommand::New(new) => scaffold::new_plugin(new),
            args::PluginCommand::Bench(bench) => plugin_bench::run(bench),
            args::PluginCommand::List => api_commands::plugins(&group.connection, None),
            args::PluginCommand::Lift { name, app } => {
                api_commands::plugins(&group.connection, Some((name, app)))
            }
        },
        args::Command::Apps(cmd) => api_commands::apps(cmd),
        args::Command::Endpoints(cmd) => api_commands::endpoints(cmd),
        args::Command::Events(cmd) => api_commands::events(cmd),
        args::Command::Deliveries(cmd) => api_commands::deliveries(cmd),
        args::Command::Operations(cmd) => api_commands::operations(cmd),
        args::Command::Keys(cmd) => api_commands::keys(cmd),
        args::Command::Completions { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(
                shell,
                &mut args::Args::command(),
                "hookline",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        args::Command::Bench(bench) => bench::run(bench),
        args::Command::BenchClaims(bench) => claim_bench::run(bench),
        args::Command::SecretKey(args::SecretKeyCommand::New) => secret_key::new(),
        args::Command::SecretKey(args::SecretKeyCommand::Status(status)) => {
            secret_key::status(status)
        }
        args::Command::Migrate(migrate) => migrate::run(migrate),
        args::Command::Verify(verify) => verify::run(verify),
        args::Command::Backup(backup) => backup::run(backup),
        args::Command::CopyStore(copy) => copy_store::run(copy),
        args::Command::Config(args::ConfigCommand::Check(check)) => config_file::check(check),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Output cut short by a closed pipe (`| head`) is not a failure.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e)
            if e.downcast_ref::<plugin::LimitExceeded>().is_some()
                || e.downcast_ref::<verify::Invalid>().is_some()
                || e.downcast_ref::<api_client::Refused>().is_some() =>
        {
            eprintln!("hookline: {e:#}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("hookline: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Logs to stderr, filtered by `HOOKLINE_LOG` (default `info`). Colour
/// codes only when stderr is a terminal: a file or a log pipeline gets
/// plain text, or JSON with `--log-format json`.
fn init_logging(format: args::LogFormat) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOOKLINE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        args::LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        // Span fields (a delivery's ids) are flattened into each line's
        // `span` and `spans`, so a pipeline can search by delivery id.
        args::LogFormat::Json => builder.json().try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::api_args::EndpointsAction;
    use super::args::{Args, Command};
    use clap::{CommandFactory as _, Parser as _};

    #[test]
    fn the_command_line_is_well_formed() {
        Args::command().debug_assert();
    }

    #[test]
    fn an_endpoint_s_url_is_never_taken_for_the_engine_s() {
        let args = Args::try_parse_from([
            "hookline",
            "endpoints",
            "add",
            "app_1",
            "http://receiver.example/hook",
            "--url",
            "http://engine.example:4665",
        ])
        .unwrap();
        let Command::Endpoints(endpoints) = args.command else {
            panic!("not endpoints");
        };
        assert_eq!(endpoints.connection.url, "http://engine.example:4665");
        let EndpointsAction::Add { url, .. } = endpoints.action else {
            panic!("not add");
        };
        assert_eq!(url, "http://receiver.example/hook");
    }
}
