//! The `hookline` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    hookline::cli::main()
}
