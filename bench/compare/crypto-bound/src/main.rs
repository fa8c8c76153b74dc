//! The BoringSSL cost, on the current CPU, of the public-key operations one full TLS 1.3 mTLS
//! handshake needs on the server:
//!
//! - one CertificateVerify signature with the server key (ECDSA P-256 / SHA-256, or
//!   RSA-PSS / SHA-256 for an RSA key),
//! - three client-chain verifications: the client's CertificateVerify, the leaf's signature
//!   (by the intermediate) and the intermediate's signature (by the root),
//! - one X25519 key generation and one X25519 shared secret.
//!
//! It also times the extra work of the X25519MLKEM768 hybrid (server side: parse the client's
//! ML-KEM-768 public key and encapsulate), which a BoringSSL server picks by default when the
//! client offers it.
//!
//! Usage: portcullis-crypto-bound --server-key K --client-key K --client-leaf PEM
//!        --intermediate PEM --root PEM [--secs S]
//! Prints one JSON object (microseconds per operation, fastest of 5 rounds) on stdout.
//!
//! Probe mode: portcullis-crypto-bound --probe 127.0.0.1:PORT --ca ROOT.pem --cert CLIENT.pem
//! --key CLIENT.key connects once with BoringSSL's default client settings (the ones
//! portcullis-loadtest uses: TLS 1.3, ALPN http/1.1, default groups) and prints the negotiated
//! version, cipher, key-exchange group and ALPN as JSON.

use std::hint::black_box;
use std::time::{Duration, Instant};

use boring::hash::MessageDigest;
use boring::pkey::{Id, PKey, Private, Public};
use boring::rsa::Padding;
use boring::sign::{RsaPssSaltlen, Signer, Verifier};
use boring::x509::X509;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn need(args: &[String], name: &str) -> String {
    arg(args, name).unwrap_or_else(|| {
        eprintln!("missing {name}");
        std::process::exit(2)
    })
}

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| {
        eprintln!("{path}: {e}");
        std::process::exit(2)
    })
}

/// Fastest of 5 rounds (about `round` each) in microseconds per call of `f`: the least
/// disturbed by other work on the core, as befits a lower bound.
fn time_op(round: Duration, mut f: impl FnMut()) -> f64 {
    // Warm up and estimate the batch size.
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < round / 4 {
        f();
        n += 1;
    }
    let per = start.elapsed().as_secs_f64() / n as f64;
    let batch = ((round.as_secs_f64() / per) as u64).max(1);
    let mut rounds: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..batch {
                f();
            }
            t.elapsed().as_secs_f64() * 1e6 / batch as f64
        })
        .collect();
    rounds.sort_by(|a, b| a.partial_cmp(b).unwrap());
    rounds[0]
}

fn is_rsa<T: boring::pkey::HasPublic>(key: &PKey<T>) -> bool {
    key.id() == Id::RSA
}

fn signer<'a>(key: &'a PKey<Private>) -> Signer<'a> {
    let mut s = Signer::new(MessageDigest::sha256(), key).expect("signer");
    if is_rsa(key) {
        s.set_rsa_padding(Padding::PKCS1_PSS).expect("pss");
        s.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH)
            .expect("saltlen");
    }
    s
}

fn verifier<'a>(key: &'a PKey<Public>) -> Verifier<'a> {
    let mut v = Verifier::new(MessageDigest::sha256(), key).expect("verifier");
    if is_rsa(key) {
        v.set_rsa_padding(Padding::PKCS1_PSS).expect("pss");
        v.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH)
            .expect("saltlen");
    }
    v
}

/// Connects once (loopback only) and reports what was negotiated.
fn probe(args: &[String], target: &str) {
    use boring::ssl::{SslConnector, SslMethod, SslVersion};
    let addr: std::net::SocketAddr = target.parse().expect("--probe 127.0.0.1:PORT");
    assert!(addr.ip().is_loopback(), "loopback targets only");
    let mut b = SslConnector::builder(SslMethod::tls()).expect("connector");
    b.set_min_proto_version(Some(SslVersion::TLS1_3)).expect("version");
    b.set_alpn_protos(b"\x08http/1.1").expect("alpn");
    // The groups portcullis-loadtest offers by default (its --groups), so the reported group
    // is the one the measured runs negotiated.
    b.set_curves_list(&arg(args, "--groups").unwrap_or_else(|| "X25519:P-256".to_owned()))
        .expect("groups");
    b.set_ca_file(need(args, "--ca")).expect("ca");
    b.set_certificate_chain_file(need(args, "--cert")).expect("cert");
    b.set_private_key_file(need(args, "--key"), boring::ssl::SslFiletype::PEM)
        .expect("key");
    let connector = b.build();
    let tcp = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let stream = connector.connect("localhost", tcp).expect("handshake");
    let ssl = stream.ssl();
    println!(
        "{{\"version\":\"{}\",\"cipher\":\"{}\",\"group\":\"{}\",\"alpn\":\"{}\"}}",
        ssl.version_str(),
        ssl.current_cipher().map(|c| c.name()).unwrap_or("?"),
        ssl.curve_name().unwrap_or("?"),
        ssl.selected_alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(target) = arg(&args, "--probe") {
        probe(&args, &target);
        return;
    }
    let secs: f64 = arg(&args, "--secs")
        .map(|s| s.parse().expect("--secs"))
        .unwrap_or(0.4);
    let round = Duration::from_secs_f64(secs);
    let server_key = PKey::private_key_from_pem(&read(&need(&args, "--server-key"))).expect("key");
    let client_key = PKey::private_key_from_pem(&read(&need(&args, "--client-key"))).expect("key");
    let leaf = X509::from_pem(&read(&need(&args, "--client-leaf"))).expect("leaf");
    let inter = X509::from_pem(&read(&need(&args, "--intermediate"))).expect("intermediate");
    let root = X509::from_pem(&read(&need(&args, "--root"))).expect("root");
    let inter_pub = inter.public_key().expect("intermediate key");
    let root_pub = root.public_key().expect("root key");
    let client_pub =
        PKey::public_key_from_der(&client_key.public_key_to_der().expect("der")).expect("pub");

    // The signed content of a TLS 1.3 CertificateVerify: 64 spaces, the context string, a zero
    // byte and the transcript hash (SHA-256: 32 bytes).
    let mut cv = vec![0x20u8; 64];
    cv.extend_from_slice(b"TLS 1.3, server CertificateVerify\0");
    cv.extend_from_slice(&[0x5a; 32]);
    let mut client_cv = vec![0x20u8; 64];
    client_cv.extend_from_slice(b"TLS 1.3, client CertificateVerify\0");
    client_cv.extend_from_slice(&[0xa5; 32]);
    let client_sig = {
        let mut s = signer(&client_key);
        s.update(&client_cv).expect("update");
        s.sign_to_vec().expect("sign")
    };
    assert!(leaf.verify(&inter_pub).expect("verify"), "leaf not signed by intermediate");
    assert!(inter.verify(&root_pub).expect("verify"), "intermediate not signed by root");

    let sign_us = time_op(round, || {
        let mut s = signer(&server_key);
        s.update(&cv).expect("update");
        black_box(s.sign_to_vec().expect("sign"));
    });
    let cv_verify_us = time_op(round, || {
        let mut v = verifier(&client_pub);
        v.update(&client_cv).expect("update");
        assert!(v.verify(&client_sig).expect("verify"));
    });
    let leaf_verify_us = time_op(round, || {
        assert!(black_box(&leaf).verify(&inter_pub).expect("verify"));
    });
    let inter_verify_us = time_op(round, || {
        assert!(black_box(&inter).verify(&root_pub).expect("verify"));
    });

    let mut peer_pub = [0u8; 32];
    let mut peer_priv = [0u8; 64];
    unsafe { boring_sys::X25519_keypair(peer_pub.as_mut_ptr(), peer_priv.as_mut_ptr()) };
    let x25519_keygen_us = time_op(round, || {
        let mut public = [0u8; 32];
        let mut private = [0u8; 32];
        unsafe { boring_sys::X25519_keypair(public.as_mut_ptr(), private.as_mut_ptr()) };
        black_box((public, private));
    });
    let mut own_pub = [0u8; 32];
    let mut own_priv = [0u8; 32];
    unsafe { boring_sys::X25519_keypair(own_pub.as_mut_ptr(), own_priv.as_mut_ptr()) };
    let x25519_derive_us = time_op(round, || {
        let mut shared = [0u8; 32];
        let ok = unsafe { boring_sys::X25519(shared.as_mut_ptr(), own_priv.as_ptr(), peer_pub.as_ptr()) };
        assert_eq!(ok, 1);
        black_box(shared);
    });

    // ML-KEM-768 (server side of X25519MLKEM768): parse the client's key share, encapsulate.
    let mut mlkem_pub_bytes = vec![0u8; boring_sys::MLKEM768_PUBLIC_KEY_BYTES as usize];
    unsafe {
        let mut public: boring_sys::MLKEM768_public_key = std::mem::zeroed();
        let mut private: boring_sys::MLKEM768_private_key = std::mem::zeroed();
        let mut encoded = [0u8; boring_sys::MLKEM768_PUBLIC_KEY_BYTES as usize];
        boring_sys::MLKEM768_generate_key(encoded.as_mut_ptr(), std::ptr::null_mut(), &mut private);
        boring_sys::MLKEM768_public_from_private(&mut public, &private);
        mlkem_pub_bytes.copy_from_slice(&encoded);
    }
    let mlkem768_encap_us = time_op(round, || unsafe {
        let mut public: boring_sys::MLKEM768_public_key = std::mem::zeroed();
        let mut cbs = boring_sys::CBS {
            data: mlkem_pub_bytes.as_ptr(),
            len: mlkem_pub_bytes.len(),
        };
        assert_eq!(boring_sys::MLKEM768_parse_public_key(&mut public, &mut cbs), 1);
        let mut ct = [0u8; boring_sys::MLKEM768_CIPHERTEXT_BYTES as usize];
        let mut ss = [0u8; boring_sys::MLKEM_SHARED_SECRET_BYTES as usize];
        boring_sys::MLKEM768_encap(ct.as_mut_ptr(), ss.as_mut_ptr(), &public);
        black_box((ct, ss));
    });

    let bound = sign_us + cv_verify_us + leaf_verify_us + inter_verify_us + x25519_keygen_us
        + x25519_derive_us;
    let kind = if is_rsa(&server_key) {
        format!("rsa{}", server_key.bits())
    } else {
        "ecdsa-p256".to_string()
    };
    println!(
        "{{\"kind\":\"{kind}\",\"server_sign_us\":{sign_us:.3},\"client_cv_verify_us\":{cv_verify_us:.3},\
\"leaf_verify_us\":{leaf_verify_us:.3},\"intermediate_verify_us\":{inter_verify_us:.3},\
\"x25519_keygen_us\":{x25519_keygen_us:.3},\"x25519_derive_us\":{x25519_derive_us:.3},\
\"mlkem768_parse_encap_us\":{mlkem768_encap_us:.3},\"bound_us\":{bound:.3},\
\"bound_hybrid_us\":{:.3}}}",
        bound + mlkem768_encap_us
    );
}
