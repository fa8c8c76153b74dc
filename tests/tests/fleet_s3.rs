//! A fleet reading its trust bundle and revocation list from one S3-compatible object store:
//! a real `moto_server` started by the test on 127.0.0.1, three real Portcullis instances on
//! their own ports (each with its own cache), real curl handshakes.
//!
//! Checks, in order: the three instances serve from the objects; a URL-sourced store is
//! read-only in the admin API; an overwritten revocation list reaches all three within one
//! poll interval (the time is measured and printed); a corrupt bundle is refused by all three
//! and the last good one stays; with the store stopped they keep serving; a restarted
//! instance starts from its cached copies.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use portcullis_e2e::s3::{Moto, AWS_ENV};
use portcullis_e2e::{
    admin_json, config_text, origin, serial_hex, wait_for, Curl, CurlResult, DemoOrigin,
    Portcullis, SiteConfig, TestPki,
};
use serde_json::Value;

/// The poll interval of the fleet.
const POLL: Duration = Duration::from_secs(1);
/// Slack on top of one poll interval for the request, the reload and a loaded machine.
const SLACK: Duration = Duration::from_millis(1500);

const BUCKET: &str = "fleet";

struct Instance {
    dir: tempfile::TempDir,
    server: Portcullis,
}

impl Instance {
    fn config_path(&self) -> PathBuf {
        self.dir.path().join("portcullis.toml")
    }

    fn admin(&self, method: &str, path: &str) -> (u16, Value) {
        admin_json(self.server.admin.expect("admin"), method, path)
    }

    fn status(&self) -> Value {
        let (status, body) = self.admin("GET", "/status");
        assert_eq!(status, 200, "{body}");
        body
    }

    fn source<'a>(status: &'a Value, key: &str) -> &'a Value {
        status["sources"]
            .as_array()
            .and_then(|sources| {
                sources
                    .iter()
                    .find(|s| s["url"] == format!("s3://{BUCKET}/{key}"))
            })
            .unwrap_or_else(|| panic!("no source {key} in {status:#}"))
    }
}

fn start_instance(
    pki: &TestPki,
    origin: &DemoOrigin,
    moto: &Moto,
    dir: tempfile::TempDir,
) -> Instance {
    let config_path = write_config(pki, origin, moto, dir.path());
    let server = Portcullis::start_file_with_env(
        &config_path,
        tempfile::tempdir().expect("log dir"),
        &AWS_ENV,
    );
    Instance { dir, server }
}

fn write_config(pki: &TestPki, origin: &DemoOrigin, moto: &Moto, dir: &Path) -> PathBuf {
    let mut site = SiteConfig::new(
        origin.addr(),
        "required",
        Some(PathBuf::from(format!("s3://{BUCKET}/bundle.pem"))),
    );
    site.mtls_extra = "revocation_store = \"fleet\"\n".into();
    let extra = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [sources]\npoll_interval = \"{}ms\"\ntimeout = \"2s\"\ns3_endpoint = \"{}\"\ns3_allow_http = true\n\n\
         [[revocation_store]]\nname = \"fleet\"\nfile = \"s3://{BUCKET}/revoked.json\"\n",
        POLL.as_millis(),
        moto.endpoint()
    );
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, config_text(pki, &[site], &extra)).expect("write config");
    path
}

fn get(pki: &TestPki, server: &Portcullis, cert: &(PathBuf, PathBuf)) -> CurlResult {
    Curl::new(server, "localhost", "/", &pki.path("root.pem"))
        .cert(&cert.0, &cert.1)
        .run()
}

fn revoked_json(serials: &[&str]) -> Vec<u8> {
    let data: Vec<String> = serials
        .iter()
        .map(|s| format!("{{\"key\":\"{s}\",\"value\":\"fleet\"}}"))
        .collect();
    format!("{{\"data\":[{}]}}", data.join(",")).into_bytes()
}

fn unix_ms(t: SystemTime) -> u128 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .expect("after the epoch")
        .as_millis()
}

#[test]
fn a_fleet_of_three_follows_one_bundle_and_revocation_list_in_s3() {
    let mut moto = Moto::start();
    moto.create_bucket(BUCKET);
    let pki = TestPki::new();
    let origin = origin();
    let bundle = format!("{}{}", pki.root.cert_pem, pki.intermediate.cert_pem);
    moto.put(BUCKET, "bundle.pem", bundle.as_bytes());
    moto.put(BUCKET, "revoked.json", &revoked_json(&[]));
    let alice = TestPki::client(&pki.intermediate, "alice");
    let bob = TestPki::client(&pki.intermediate, "bob");
    let alice_files = pki.write_client("alice", &alice, &[&pki.intermediate]);
    let bob_files = pki.write_client("bob", &bob, &[&pki.intermediate]);

    let mut fleet: Vec<Instance> = (0..3)
        .map(|_| start_instance(&pki, &origin, &moto, tempfile::tempdir().expect("dir")))
        .collect();
    for (i, instance) in fleet.iter().enumerate() {
        let r = get(&pki, &instance.server, &alice_files);
        assert_eq!(r.status, Some(200), "instance {i}: {r:?}");
        let status = instance.status();
        for key in ["bundle.pem", "revoked.json"] {
            let source = Instance::source(&status, key);
            assert_eq!(source["state"], "ok", "{source:#}");
            assert!(source["etag"].is_string(), "{source:#}");
        }
    }

    // A store read from an object URL is read-only in the admin API.
    let (status, body) =
        fleet[0].admin("GET", &format!("/revocations/fleet/{}", serial_hex(&alice)));
    assert_eq!(status, 404, "not revoked yet: {body}");
    let put = portcullis_e2e::admin_call(
        fleet[0].server.admin.expect("admin"),
        "PUT",
        &format!("/revocations/fleet/{}", serial_hex(&alice)),
        Some(&pki.path("alice.pem")),
    );
    assert_eq!(put.0, 409, "{}", put.1);
    assert!(put.1.contains("read-only"), "{}", put.1);

    // Overwrite the revocation list: every instance applies it within one poll interval.
    let generations: Vec<u64> = fleet
        .iter()
        .map(|i| i.status()["generation"].as_u64().expect("generation"))
        .collect();
    let written = SystemTime::now();
    let start = Instant::now();
    moto.put(
        BUCKET,
        "revoked.json",
        &revoked_json(&[&serial_hex(&alice)]),
    );
    let mut seen_refused = Vec::new();
    for (i, instance) in fleet.iter().enumerate() {
        wait_for(
            POLL * 3 + SLACK * 4,
            "the revocation to reach the fleet",
            || {
                let r = get(&pki, &instance.server, &alice_files);
                (r.status.is_none() && r.stderr.contains("certificate revoked")).then_some(())
            },
        );
        seen_refused.push(start.elapsed());
        let _ = i;
    }
    let mut applied_ms = Vec::new();
    for (i, instance) in fleet.iter().enumerate() {
        let status = instance.status();
        assert_eq!(
            status["generation"].as_u64(),
            Some(generations[i] + 1),
            "instance {i}: exactly one reload: {status:#}"
        );
        assert_eq!(status["trigger"], "remote-poll");
        let loaded = status["loaded_at"]["unix_ms"].as_u64().expect("unix_ms") as u128;
        applied_ms.push(loaded.saturating_sub(unix_ms(written)));
        let r = get(&pki, &instance.server, &bob_files);
        assert_eq!(
            r.status,
            Some(200),
            "instance {i}: bob is not revoked: {r:?}"
        );
    }
    println!(
        "propagation of an overwritten revocation list to 3 instances (poll interval {} ms): \
         applied after {:?} ms (server-side), refused by a client after {:?}",
        POLL.as_millis(),
        applied_ms,
        seen_refused
    );
    for (i, ms) in applied_ms.iter().enumerate() {
        assert!(
            *ms <= (POLL + SLACK).as_millis(),
            "instance {i} applied the object {ms} ms after it was written"
        );
    }

    // A corrupt bundle is refused everywhere; the last good one stays.
    moto.put(
        BUCKET,
        "bundle.pem",
        b"-----BEGIN CERTIFICATE-----\ntruncated",
    );
    for (i, instance) in fleet.iter().enumerate() {
        let error = wait_for(
            POLL * 3 + SLACK * 4,
            "the corrupt bundle to be refused",
            || {
                let status = instance.status();
                let source = Instance::source(&status, "bundle.pem");
                source["last_error"]["message"].as_str().map(str::to_owned)
            },
        );
        assert!(error.contains("refused"), "instance {i}: {error}");
        let status = instance.status();
        assert_eq!(status["generation"].as_u64(), Some(generations[i] + 1));
        assert_eq!(status["last_reload"]["result"], "refused", "{status:#}");
        assert_eq!(get(&pki, &instance.server, &bob_files).status, Some(200));
    }
    // A good bundle again: it applies (the refusal did not stick to the URL).
    moto.put(BUCKET, "bundle.pem", bundle.as_bytes());
    for instance in &fleet {
        wait_for(
            POLL * 3 + SLACK * 4,
            "the good bundle to be current",
            || {
                let status = instance.status();
                (Instance::source(&status, "bundle.pem")["state"] == "ok").then_some(())
            },
        );
    }

    // The store goes away: the fleet keeps serving, and says so in /status.
    moto.stop();
    for (i, instance) in fleet.iter().enumerate() {
        wait_for(
            POLL * 3 + SLACK * 4,
            "the outage to show in /status",
            || {
                let status = instance.status();
                (Instance::source(&status, "revoked.json")["state"] == "error").then_some(())
            },
        );
        assert_eq!(
            get(&pki, &instance.server, &bob_files).status,
            Some(200),
            "{i}"
        );
        let r = get(&pki, &instance.server, &alice_files);
        assert!(r.stderr.contains("certificate revoked"), "{i}: {r:?}");
    }

    // A restart without the store starts from the cached copies.
    let first = fleet.remove(0);
    let Instance { dir, mut server } = first;
    assert_eq!(server.stop(), Some(0));
    let restarted = start_instance(&pki, &origin, &moto, dir);
    assert_eq!(get(&pki, &restarted.server, &bob_files).status, Some(200));
    let r = get(&pki, &restarted.server, &alice_files);
    assert!(r.stderr.contains("certificate revoked"), "{r:?}");
    let status = restarted.status();
    for key in ["bundle.pem", "revoked.json"] {
        assert_eq!(
            Instance::source(&status, key)["state"],
            "cached",
            "{status:#}"
        );
    }
    assert!(restarted.config_path().exists());
}
