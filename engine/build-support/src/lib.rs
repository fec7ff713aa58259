//! Build-script support shared by `engine/build.rs` (the built-in plugins)
//! and `tests/build.rs` (the test guests):
//!
//! - [`toolchain`] makes sure the `wasm32-wasip2` standard library is
//!   installed, installing it with rustup when it can and failing at once
//!   with the command to run when it cannot;
//! - [`components`] builds workspace crates as `wasm32-wasip2` components.
//!
//! It is a crate of its own, with no dependencies, so that its own build
//! script (the same toolchain check) runs in the first seconds of a fresh
//! build instead of after minutes of compiling the engine's dependencies.

pub mod components;
pub mod toolchain;
