//! Connection function events: any test event (the JSON shape `portcullis function test`
//! reads, certificate fields as a handshake would give them) runs the announcement's function
//! and one that reads every field to a decision, never a panic; the custom data stays within
//! its limit.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use portcullis::function::{ConnectionFunction, TestEvent};

/// Reads every field of the event and echoes some of it into the log data.
const READ_ALL: &str = r#"
function connectionHandler(connection) {
  const cert = connection.clientCertificate;
  let text = connection.clientIp + "|" + connection.endpoint;
  if (cert) {
    text += "|" + JSON.stringify(cert);
  }
  connection.logCustomData(text);
  if (cert && cert.certificates && cert.certificates.leaf &&
      String(cert.certificates.leaf.subject).includes("deny")) {
    connection.deny();
  } else {
    connection.allow();
  }
}
"#;

fn functions() -> &'static [ConnectionFunction; 2] {
    static FUNCTIONS: OnceLock<[ConnectionFunction; 2]> = OnceLock::new();
    FUNCTIONS.get_or_init(|| {
        let organization = include_str!("../../dataplane/functions/organization.js");
        let compile = |name: &str, source: &str| {
            ConnectionFunction::new(name, Arc::from(source), Duration::from_millis(50), None)
                .expect("the function compiles")
        };
        [
            compile("organization.js", organization),
            compile("read_all.js", READ_ALL),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(event) = serde_json::from_slice::<TestEvent>(data) else {
        return;
    };
    let leaf = event.leaf();
    let input = event.input(leaf.as_ref());
    for function in functions() {
        let report = function.call(&input);
        if let Some(custom) = &report.custom_data {
            assert!(custom.len() <= 800, "custom data of {} bytes", custom.len());
        }
    }
});
