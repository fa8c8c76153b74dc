//! Table-driven tests of connection functions without sockets: the functions the spec says
//! must run unchanged, every way of failing closed, the key-value store API, custom data.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::*;

/// The announcement's function, byte for byte (`spec/viewer-mtls.md`).
pub(crate) const ANNOUNCEMENT: &str = r#"import cf from 'cloudfront';
async function connectionHandler(connection) {
    const kvsHandle = cf.kvs();
    const serialNumber = connection.clientCertificate.certificates.leaf.serialNumber.replace(/:/g, "");
    const isRevoked = await kvsHandle.exists(serialNumber);
    if (isRevoked) {
        connection.logCustomData(`Revoked certificate: ${serialNumber}`);
        return connection.deny();
    }
    connection.logCustomData(`Valid certificate: ${serialNumber}`);
    return connection.allow();
}
"#;

/// The shape of CloudFront's documented revocation example: `replaceAll`, bare
/// `deny()`/`allow()` statements, `console.log` with a template string.
const DOCUMENTED_STYLE: &str = r#"import cf from 'cloudfront';

async function connectionHandler(connection) {
    const kvsHandle = cf.kvs();
    const clientSerialNumber = connection.clientCertificate.certificates.leaf.serialNumber.replaceAll(":", "");
    const serialNumberExistsInKvs = await kvsHandle.exists(clientSerialNumber);
    if (serialNumberExistsInKvs) {
        console.log(`Certificate ${clientSerialNumber} is revoked. Denying connection.`);
        connection.deny();
    } else {
        console.log(`Certificate ${clientSerialNumber} is valid. Allowing connection.`);
        connection.allow();
    }
}
"#;

/// A store holding `0a1b2c` (revoked) and a JSON value.
fn store() -> (tempfile::TempDir, KvsSource) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("viewers.json");
    std::fs::write(
        &path,
        r#"{"data":[{"key":"0A:1B:2C","value":"compromised"},{"key":"ff","value":"{\"tier\":\"gold\",\"n\":3}"}]}"#,
    )
    .expect("write store");
    let kvs = KvsSource::from_import_file(&path).expect("store");
    (dir, kvs)
}

fn leaf(serial: &str) -> LeafFields {
    LeafFields {
        serial: serial.into(),
        subject: "C=US, O=Example Corp, CN=viewer".into(),
        issuer: "C=US, O=Example Corp, CN=Issuing CA".into(),
        validity: "NotBefore=2025-09-10T23:43:10Z;NotAfter=2026-09-10T23:43:10Z".into(),
        sha256: "ab".repeat(32).into(),
        subject_alternative_names: vec![
            "DNS:viewer.example.com".into(),
            "URI:spiffe://example/viewer".into(),
        ]
        .into_boxed_slice(),
    }
}

fn input(leaf: Option<&LeafFields>) -> FunctionInput<'_> {
    FunctionInput {
        leaf,
        client_ip: IpAddr::from([198, 51, 100, 7]),
        endpoint: "shop.example.com",
        distribution_id: "shop",
        connection_id: "conn-1",
        tls_version: Some("TLSv1.3"),
    }
}

fn function(source: &str, kvs: Option<KvsSource>) -> ConnectionFunction {
    ConnectionFunction::new("test.js", Arc::from(source), Duration::from_millis(50), kvs)
        .unwrap_or_else(|e| panic!("compile: {e}"))
}

fn failure(report: &CallReport) -> Option<&FunctionFailure> {
    report.decision.as_ref().err().map(|r| &r.failure)
}

#[test]
fn announcement_function_runs_unchanged() {
    let (_dir, kvs) = store();
    let f = function(ANNOUNCEMENT, Some(kvs));
    for serial in ["0a:1b:2c", "00:0a:1b:2c"] {
        let revoked = leaf(serial);
        let report = f.call(&input(Some(&revoked)));
        assert_eq!(failure(&report), Some(&FunctionFailure::Denied), "{serial}");
        let expected = format!("Revoked certificate: {}", serial.replace(':', ""));
        assert_eq!(report.custom_data.as_deref(), Some(expected.as_str()));
        let refusal = report.decision.expect_err("denied");
        assert!(refusal.is_denial());
        assert_eq!(refusal.to_string(), "denied by connection function test.js");
    }
    let good = leaf("0a:1b:2d");
    let report = f.call(&input(Some(&good)));
    assert_eq!(report.decision, Ok(()));
    assert_eq!(
        report.custom_data.as_deref(),
        Some("Valid certificate: 0a1b2d")
    );
}

#[test]
fn documented_style_variant_and_console() {
    let (_dir, kvs) = store();
    let f = function(DOCUMENTED_STYLE, Some(kvs));
    let revoked = leaf("0a:1b:2c");
    let report = f.call_collecting_console(&input(Some(&revoked)));
    assert_eq!(failure(&report), Some(&FunctionFailure::Denied));
    assert_eq!(
        report.console,
        vec!["Certificate 0a1b2c is revoked. Denying connection.".to_owned()]
    );
    let good = leaf("01");
    let report = f.call_collecting_console(&input(Some(&good)));
    assert_eq!(report.decision, Ok(()));
    assert_eq!(report.console.len(), 1);
}

#[test]
fn smallest_function_and_event_fields() {
    let f = function(
        "function connectionHandler(connection) { connection.allow(); }",
        None,
    );
    assert_eq!(f.call(&input(None)).decision, Ok(()));
    let probe = function(
        r#"function connectionHandler(c) {
            const l = c.clientCertificate.certificates.leaf;
            c.logCustomData([l.serialNumber, l.subject, l.issuer, l.validity.notBefore, l.validity.notAfter,
                l.sha256Fingerprint.length, l.subjectAlternativeNames.join("|"), c.clientIp, c.endpoint,
                c.distributionId, c.connectionId, c.tlsVersion].join(" / "));
            c.allow();
        }"#,
        None,
    );
    let fields = leaf("0a:1b");
    let report = probe.call(&input(Some(&fields)));
    assert_eq!(report.decision, Ok(()));
    assert_eq!(
        report.custom_data.as_deref(),
        Some(
            "0a:1b / C=US, O=Example Corp, CN=viewer / C=US, O=Example Corp, CN=Issuing CA / \
             2025-09-10T23:43:10Z / 2026-09-10T23:43:10Z / 64 / DNS:viewer.example.com|URI:spiffe://example/viewer / \
             198.51.100.7 / shop.example.com / shop / conn-1 / TLSv1.3"
        )
    );
    let absent = function(
        "function connectionHandler(c) { if (c.clientCertificate === undefined) c.allow(); else c.deny(); }",
        None,
    );
    assert_eq!(absent.call(&input(None)).decision, Ok(()));
}

#[test]
fn every_way_of_not_deciding_fails_closed() {
    type Expect = fn(&FunctionFailure) -> bool;
    let cases: &[(&str, Expect)] = &[
        ("function connectionHandler(c) { throw new Error('boom'); }", |f| {
            matches!(f, FunctionFailure::Exception(t) if t.starts_with("Error: boom (at test.js:1:"))
        }),
        ("async function connectionHandler(c) { await null; throw new TypeError('late'); }", |f| {
            matches!(f, FunctionFailure::Rejected(t) if t.starts_with("TypeError: late"))
        }),
        ("function connectionHandler(c) { return Promise.reject(new Error('no')); }", |f| {
            matches!(f, FunctionFailure::Rejected(t) if t.starts_with("Error: no"))
        }),
        ("function connectionHandler(c) { }", |f| *f == FunctionFailure::NoDecision),
        ("async function connectionHandler(c) { await new Promise(() => {}); }", |f| {
            *f == FunctionFailure::NeverSettled
        }),
        ("function connectionHandler(c) { while (true) {} }", |f| {
            matches!(f, FunctionFailure::TimeLimit(_))
        }),
        ("function connectionHandler(c) { try { while (true) {} } catch (e) { } c.allow(); }", |f| {
            matches!(f, FunctionFailure::TimeLimit(_))
        }),
        ("async function connectionHandler(c) { for (;;) await null; }", |f| {
            matches!(f, FunctionFailure::TimeLimit(_))
        }),
        ("function connectionHandler(c) { c.allow(); throw new Error('after'); }", |f| {
            matches!(f, FunctionFailure::Exception(_))
        }),
        ("function connectionHandler(c) { const a = []; for (;;) a.push(new Array(100000).fill(1)); }", |f| {
            matches!(f, FunctionFailure::Exception(t) if t.contains("out of memory"))
                || matches!(f, FunctionFailure::TimeLimit(_))
        }),
    ];
    for (source, expected) in cases {
        let f = function(source, None);
        let report = f.call(&input(None));
        let got = failure(&report);
        assert!(got.is_some_and(expected), "{source}: {got:?}");
        // The engine goes on serving other functions on this thread.
        let next = function("function connectionHandler(c) { c.allow(); }", None);
        assert_eq!(next.call(&input(None)).decision, Ok(()), "after {source}");
    }
}

#[test]
fn first_decision_wins_and_last_custom_data_is_kept() {
    let f = function(
        "function connectionHandler(c) { c.logCustomData('one'); c.deny(); c.allow(); c.logCustomData('two'); }",
        None,
    );
    let report = f.call(&input(None));
    assert_eq!(failure(&report), Some(&FunctionFailure::Denied));
    assert_eq!(report.custom_data.as_deref(), Some("two"));
}

#[test]
fn custom_data_is_cut_at_800_bytes_on_a_character_boundary() {
    // 799 ASCII bytes then a 3-byte character: 802 bytes, cut back to 799.
    let f = function(
        "function connectionHandler(c) { c.logCustomData('a'.repeat(799) + '\u{20ac}' + 'b'); c.allow(); }",
        None,
    );
    let report = f.call(&input(None));
    assert_eq!(
        report.custom_data.as_deref(),
        Some("a".repeat(799).as_str())
    );
    assert_eq!(cut_custom_data(&"é".repeat(500)).len(), 800);
    assert_eq!(cut_custom_data(&format!("{}é", "a".repeat(799))).len(), 799);
}

#[test]
fn key_value_store_api() {
    let (_dir, kvs) = store();
    let f = function(
        r#"import cf from 'cloudfront';
        async function connectionHandler(c) {
            const kvs = cf.kvs();
            const out = [];
            out.push(await kvs.exists("0a1b2c"), await kvs.exists("0A:1B:2C"), await kvs.exists("0a1b2d"), await kvs.exists("not-a-serial"));
            out.push(await kvs.get("0a:1b:2c"));
            out.push((await kvs.get("ff", { format: "json" })).tier);
            out.push(Array.from(await kvs.get("0a1b2c", { format: "bytes" })).length);
            try { await kvs.get("0a1b2d"); out.push("found?"); } catch (e) { out.push(e.message); }
            const meta = await kvs.meta();
            out.push(meta.keyCount, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(meta.creationDateTime),
                     /Z$/.test(meta.lastUpdatedDateTime));
            c.logCustomData(out.join(","));
            c.allow();
        }"#,
        Some(kvs),
    );
    let report = f.call(&input(None));
    assert_eq!(report.decision, Ok(()), "{report:?}");
    assert_eq!(
        report.custom_data.as_deref(),
        Some("true,true,false,false,compromised,gold,11,key not found: 0a1b2d,2,true,true")
    );
    let without = function(
        "import cf from 'cloudfront'; function connectionHandler(c) { cf.kvs(); c.allow(); }",
        None,
    );
    let report = without.call(&input(None));
    assert!(
        matches!(failure(&report), Some(FunctionFailure::Exception(t)) if t.contains("no key-value store")),
        "{report:?}"
    );
}

#[test]
fn compile_errors_name_line_and_column() {
    let syntax = ConnectionFunction::new(
        "bad.js",
        Arc::from("function connectionHandler(c) {\n  c.allow(;\n}\n"),
        Duration::from_millis(5),
        None,
    )
    .expect_err("syntax error");
    assert!(syntax.message.starts_with("SyntaxError"), "{syntax}");
    assert_eq!(syntax.location.map(|(l, _)| l), Some(2), "{syntax}");
    let missing = ConnectionFunction::new(
        "none.js",
        Arc::from("function handler(e) {}"),
        Duration::from_millis(5),
        None,
    )
    .expect_err("no handler");
    assert_eq!(
        missing.message, "the function must define connectionHandler(connection)",
        "{missing}"
    );
    let import = ConnectionFunction::new(
        "imp.js",
        Arc::from("import fs from 'fs';\nfunction connectionHandler(c) { c.allow(); }"),
        Duration::from_millis(5),
        None,
    )
    .expect_err("foreign import");
    assert!(import.message.contains("only 'cloudfront'"), "{import}");
    let looping = ConnectionFunction::new(
        "loop.js",
        Arc::from("while (true) {}\nfunction connectionHandler(c) { c.allow(); }"),
        Duration::from_millis(5),
        None,
    )
    .expect_err("top-level loop");
    assert!(looping.message.contains("ran past"), "{looping}");
}

#[test]
fn the_demo_ships_the_announcement_function_byte_for_byte() {
    assert_eq!(crate::demo::REVOCATION_FUNCTION, ANNOUNCEMENT);
}

#[test]
fn the_demo_organization_function() {
    let f = function(crate::demo::ORGANIZATION_FUNCTION, None);
    let mut member = leaf("01");
    member.subject = "O=Portcullis Demo, OU=Viewers, CN=client".into();
    member.subject_alternative_names = Box::default();
    let report = f.call(&input(Some(&member)));
    assert_eq!(report.decision, Ok(()));
    let mut partner = leaf("02");
    partner.subject = "O=Elsewhere Inc, CN=p".into();
    partner.subject_alternative_names = vec!["DNS:api.partners.example".into()].into_boxed_slice();
    assert_eq!(f.call(&input(Some(&partner))).decision, Ok(()));
    let mut other = leaf("03");
    other.subject = "O=Elsewhere Inc, CN=x".into();
    other.subject_alternative_names =
        vec!["DNS:evil.partners.example.com".into()].into_boxed_slice();
    let report = f.call(&input(Some(&other)));
    assert_eq!(failure(&report), Some(&FunctionFailure::Denied));
    assert_eq!(
        report.custom_data.as_deref(),
        Some("not an allowed organisation: O=Elsewhere Inc, CN=x")
    );
    assert_eq!(
        failure(&f.call(&input(None))),
        Some(&FunctionFailure::Denied)
    );
}

#[test]
fn a_connection_kept_from_an_earlier_call_decides_nothing() {
    let f = function(
        "let kept; function connectionHandler(c) { if (kept === undefined) { kept = c; c.deny(); } else { kept.allow(); kept.logCustomData('stale'); } }",
        None,
    );
    assert_eq!(
        failure(&f.call(&input(None))),
        Some(&FunctionFailure::Denied)
    );
    let report = f.call(&input(None));
    assert_eq!(failure(&report), Some(&FunctionFailure::NoDecision));
    assert_eq!(report.custom_data, None);
}
