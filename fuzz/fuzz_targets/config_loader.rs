//! `assent.toml` (CFG-1): any text either loads or is refused with an error that names the
//! file; nothing panics.
#![no_main]

use assent_server::config::LoadedConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else { return };
    match LoadedConfig::parse(text, None) {
        Ok(loaded) => {
            let _ = loaded.policy();
        }
        Err(e) => assert!(e.to_string().contains("<config>"), "an error without its file: {e}"),
    }
});
