//! Mutual TLS on the peer port: three members with https:// peer URLs and certificates from
//! one CA form a cluster; a member whose certificate another CA signed is refused by its peers
//! at the handshake, and the refusal is logged with its address.

#[path = "support/ports.rs"]
mod ports;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};

struct Issued {
    cert: Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Issued {
    let mut params = CertificateParams::new(vec![]).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Issued { cert, key }
}

/// A peer certificate: for 127.0.0.1, good to serve and to connect with.
fn peer_cert(by: &Issued, name: &str) -> Issued {
    let mut params = CertificateParams::new(vec![]).unwrap();
    params.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages =
        vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &by.cert, &by.key).unwrap();
    Issued { cert, key }
}

fn write(dir: &Path, name: &str, issued: &Issued) {
    std::fs::write(dir.join(format!("{name}.pem")), issued.cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}-key.pem")), issued.key.serialize_pem()).unwrap();
}

struct Members(Vec<Child>);

impl Drop for Members {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn etcdctl(endpoint: &str, args: &[&str]) -> Output {
    Command::new("timeout")
        .args(["20", "etcdctl"])
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg("--command-timeout=3s")
        .args(args)
        .output()
        .expect("etcdctl")
}

#[test]
fn peers_with_the_trusted_ca_form_a_cluster_and_a_stranger_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let trusted = ca("cairn peer CA");
    write(d, "ca", &trusted);
    write(d, "m1", &peer_cert(&trusted, "m1"));
    write(d, "m2", &peer_cert(&trusted, "m2"));
    write(d, "m3", &peer_cert(&ca("another CA"), "m3"));
    let p = |name: &str| d.join(name).to_str().unwrap().to_string();
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (ports::free_port(), ports::free_port())).collect();
    let cluster =
        (0..3).map(|i| format!("m{}=https://127.0.0.1:{}", i + 1, ports[i].1)).collect::<Vec<_>>().join(",");
    let mut members = Members(vec![]);
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
        members.0.push(child);
    }
    let endpoint = |i: usize| format!("127.0.0.1:{}", ports[i].0);
    // m1 and m2 are a quorum over TLS.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !etcdctl(&endpoint(0), &["put", "k", "over mutual tls"]).status.success() {
        assert!(
            Instant::now() < deadline,
            "no quorum: {}",
            std::fs::read_to_string(d.join("m1.log")).unwrap()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let got = etcdctl(&endpoint(1), &["get", "k", "--print-value-only"]);
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "over mutual tls");
    // m3 never hears from them: it cannot serve a linearizable read.
    assert!(!etcdctl(&endpoint(2), &["get", "k"]).status.success());
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
