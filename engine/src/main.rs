//! The `hookline` binary; everything lives in the library.

// The engine allocates many small, short-lived buffers per delivery across
// threads (HTTP, JSON, SQLite); mimalloc handles that pattern with less CPU
// than the system allocator (see docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    hookline::cli::main()
}
