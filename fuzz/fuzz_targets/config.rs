//! Configuration files: any text gives a snapshot or a list of `file: key: reason` errors,
//! never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Relative paths in the document resolve under a directory that does not exist, so file
    // references fail as they would on a host without them.
    if let Err(errors) = portcullis_config::parse_str(text, Path::new("/nonexistent/portcullis.toml")) {
        for e in errors.iter() {
            assert!(!e.key.is_empty());
        }
    }
});
