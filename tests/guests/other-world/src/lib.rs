//! Test fixture: a valid component of a world that is not Hookline's.

// The bindings wit-bindgen generates export `unsafe` ABI functions; this
// fixture uses them directly rather than through the SDK.
#![allow(unsafe_code)]

wit_bindgen::generate!({
    inline: "package test:other; world other { export hello: func() -> string; }",
});

struct Other;

impl Guest for Other {
    fn hello() -> String {
        "hello from another world".into()
    }
}

export!(Other);
