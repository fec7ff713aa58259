//! Test fixture: a valid component of a world that is not Hookline's.

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
