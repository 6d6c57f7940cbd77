//! Mutual TLS on the peer port: three members with https:// peer URLs and certificates from
//! one CA form a cluster; a member whose certificate another CA signed is refused by its peers
//! at the handshake, and the refusal is logged with its address.

#[path = "support/ports.rs"]
mod ports;

#[path = "support/certs.rs"]
mod certs;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use certs::{ca, etcdctl, leaf, write, Process};
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
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (ports::free_port(), ports::free_port())).collect();
    let cluster =
        (0..3).map(|i| format!("m{}=https://127.0.0.1:{}", i + 1, ports[i].1)).collect::<Vec<_>>().join(",");
    let mut members = Vec::new();
    for (i, (client, peer)) in ports.iter().enumerate() {
        let name = format!("m{}", i + 1);
        let log = std::fs::File::create(d.join(format!("{name}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(["--name", &name, "--data-dir", &p(&format!("{name}.data"))])
            .args(["--listen-client-urls", &format!("http://127.0.0.1:{client}")])
            .args(["--advertise-client-urls", &format!("http://127.0.0.1:{client}")])
            .args(["--listen-peer-urls", &format!("https://127.0.0.1:{peer}")])
            .args(["--initial-advertise-peer-urls", &format!("https://127.0.0.1:{peer}")])
            .args(["--initial-cluster", &cluster])
            .args([
                "--peer-cert-file",
                &p(&format!("{name}.pem")),
                "--peer-key-file",
                &p(&format!("{name}-key.pem")),
            ])
            .args(["--peer-trusted-ca-file", &p("ca.pem"), "--peer-client-cert-auth"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start cairn");
        members.push(Process(child));
    }
    let endpoint = |i: usize| format!("127.0.0.1:{}", ports[i].0);
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
