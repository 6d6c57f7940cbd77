//! Mutual TLS on the peer port: three members with https:// peer URLs and certificates from
//! one CA form a cluster; a member whose certificate another CA signed is refused by its peers
//! at the handshake, and the refusal is logged with its address.

#[path = "support/ports.rs"]
mod ports;

#[path = "support/certs.rs"]
mod certs;

use std::process::Command;
use std::time::{Duration, Instant};

use certs::{ca, etcdctl, leaf, tls_peer_cluster, write};
use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};

#[test]
fn peers_with_the_trusted_ca_form_a_cluster_and_a_stranger_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let trusted = ca("cairn peer CA");
    write(d, "ca", &trusted);
    write(d, "m1", &leaf(&trusted, "m1", &[ServerAuth, ClientAuth]));
    write(d, "m2", &leaf(&trusted, "m2", &[ServerAuth, ClientAuth]));
    write(d, "m3", &leaf(&ca("another CA"), "m3", &[ServerAuth, ClientAuth]));
    let p = |name: &str| d.join(name).to_str().unwrap().to_string();
    let (_members, urls, _) = tls_peer_cluster(d, "http", |name| {
        vec![
            "--peer-cert-file".into(),
            p(&format!("{name}.pem")),
            "--peer-key-file".into(),
            p(&format!("{name}-key.pem")),
            "--peer-trusted-ca-file".into(),
            p("ca.pem"),
            "--peer-client-cert-auth".into(),
        ]
    });
    let endpoint = |i: usize| urls[i].clone();
    // m1 and m2 are a quorum over TLS.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !etcdctl(&endpoint(0), &[], &["put", "k", "over mutual tls"]).status.success() {
        assert!(
            Instant::now() < deadline,
            "no quorum: {}",
            std::fs::read_to_string(d.join("m1.log")).unwrap()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let got = etcdctl(&endpoint(1), &[], &["get", "k", "--print-value-only"]);
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "over mutual tls");
    // m3 never hears from them: it cannot serve a linearizable read.
    assert!(!etcdctl(&endpoint(2), &[], &["get", "k"]).status.success());
    // Its peers refused it at the handshake, and said so with its address.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let log = std::fs::read_to_string(d.join("m1.log")).unwrap()
            + &std::fs::read_to_string(d.join("m2.log")).unwrap();
        if log.contains("a peer's TLS handshake failed") && log.contains("127.0.0.1") {
            break;
        }
        assert!(Instant::now() < deadline, "no refusal logged: {log}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `--peer-auto-tls`: https:// peer URLs without certificates; each member makes a self-signed
/// one and the peers, which do not check each other's, form a cluster over TLS.
#[test]
fn peers_with_auto_tls_form_a_cluster_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_members, urls, peer_urls) = tls_peer_cluster(d, "http", |_| vec!["--peer-auto-tls".into()]);
    let endpoint = |i: usize| urls[i].clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !etcdctl(&endpoint(0), &[], &["put", "k", "over auto tls"]).status.success() {
        assert!(
            Instant::now() < deadline,
            "no quorum: {}",
            std::fs::read_to_string(d.join("m1.log")).unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Every member has it, read through each.
    for i in 0..3 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = etcdctl(&endpoint(i), &[], &["get", "k", "--print-value-only", "--consistency=s"]);
            if String::from_utf8_lossy(&out.stdout).trim() == "over auto tls" {
                break;
            }
            assert!(Instant::now() < deadline, "m{} never applied it", i + 1);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // The peers' certificates are where etcd keeps them, and the peer port speaks only TLS.
    assert!(d.join("m1.data/fixtures/peer/cert.pem").exists());
    let plain = Command::new("curl")
        .args(["-s", "-m", "5", &format!("{}/", peer_urls[0].replacen("https://", "http://", 1))])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("cairn"), "plaintext on the TLS peer port");
}
