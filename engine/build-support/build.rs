//! Runs the toolchain check at the very start of a build: this crate has no
//! dependencies, and the engine and the tests depend on it for their build
//! scripts, so cargo runs this before it gets far into wasmtime or SQLite.

#[path = "src/toolchain.rs"]
mod toolchain;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/toolchain.rs");
    toolchain::ensure_wasm_target();
}
