//! The `hookline-sdk` version a component was built with. The SDK's
//! `export_plugin!` writes it into a custom section of the guest's core
//! module (`hookline:sdk-version`); a component built without the SDK
//! (Python, JavaScript, hand-written WIT bindings) has none.

/// The custom section's name; `sdk/src/lib.rs` writes it.
pub const SECTION: &str = "hookline:sdk-version";

/// Reads the SDK version from a component's bytes, nested modules included.
/// `None` when there is no such section or it is not a short UTF-8 string.
pub fn read(bytes: &[u8]) -> Option<String> {
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let Ok(payload) = payload else {
            return None;
        };
        if let wasmparser::Payload::CustomSection(section) = payload
            && section.name() == SECTION
        {
            let text = std::str::from_utf8(section.data()).ok()?;
            return (text.len() <= 64 && !text.is_empty()).then(|| text.to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_plugin_says_which_sdk_built_it() {
        for (name, bytes) in crate::plugins::builtin::BUILTIN {
            assert_eq!(
                read(bytes).as_deref(),
                Some(env!("CARGO_PKG_VERSION")),
                "{name}"
            );
        }
    }

    #[test]
    fn a_component_without_the_section_has_no_version() {
        // A minimal empty component.
        let empty = b"\0asm\x0d\0\x01\0";
        assert_eq!(read(empty), None);
        assert_eq!(read(b"garbage"), None);
    }
}
