//! Trust bundles and CRL files: any bytes in either file give a snapshot or `file: key: reason`
//! errors naming that file, never a panic (the PEM reader, the DER certificate and CRL parsers,
//! the CA checks and the CRL signature checks all see them).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// A directory with a configuration naming `bundle.pem` as the trust store and `crl.pem` as a
/// CRL file (the certificate and key files are absent: their errors are expected).
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("portcullis-fuzz-pem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        dir
    })
}

const CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:0"]
[[site]]
name = "only"
certificate = "server.pem"
private_key = "server.key"
origin = "http://127.0.0.1:8080"
[site.mtls]
mode = "required"
trust_store = "bundle.pem"
crls = ["crl.pem"]
"#;

fuzz_target!(|data: &[u8]| {
    // The first byte says where the bundle ends and the CRL file begins.
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let at = (split as usize * rest.len()) / 255;
    let (bundle, crl) = rest.split_at(at);
    let dir = dir();
    std::fs::write(dir.join("bundle.pem"), bundle).expect("write bundle");
    std::fs::write(dir.join("crl.pem"), crl).expect("write crl");
    let config = dir.join("portcullis.toml");
    if let Err(errors) = portcullis_config::parse_str(CONFIG, &config) {
        for e in errors.iter() {
            assert!(!e.key.is_empty());
        }
    }
});
