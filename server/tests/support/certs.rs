//! Certificates made on the fly for the TLS tests, member processes that stop when dropped,
//! and etcdctl with TLS flags (include it as `mod certs` beside `mod ports`).

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Output};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};

pub struct Issued {
    pub cert: Certificate,
    pub key: KeyPair,
}

pub fn ca(name: &str) -> Issued {
    let mut params = CertificateParams::new(vec![]).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Issued { cert, key }
}

/// A certificate `by` signs for localhost and 127.0.0.1, good for `purposes`.
pub fn leaf(by: &Issued, common_name: &str, purposes: &[ExtendedKeyUsagePurpose]) -> Issued {
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.extended_key_usages = purposes.to_vec();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &by.cert, &by.key).unwrap();
    Issued { cert, key }
}

/// Writes `<name>.pem` and `<name>-key.pem` into `dir`.
pub fn write(dir: &Path, name: &str, issued: &Issued) {
    std::fs::write(dir.join(format!("{name}.pem")), issued.cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}-key.pem")), issued.key.serialize_pem()).unwrap();
}

/// A member process, killed when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn etcdctl(endpoint: &str, tls: &[String], args: &[&str]) -> Output {
    Command::new("timeout")
        .args(["20", "etcdctl"])
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg("--command-timeout=5s")
        .arg("--dial-timeout=3s")
        .args(tls)
        .args(args)
        .output()
        .expect("etcdctl")
}

/// Three members whose peer URLs are https:// on loopback, each started with the flags
/// `flags(name)` adds (certificates, auth options), its log in `d/<name>.log` and its data in
/// `d/<name>.data`; client URLs are `client_scheme://`. The members, their client URLs and their
/// peer URLs.
pub fn tls_peer_cluster(
    d: &Path,
    client_scheme: &str,
    flags: impl Fn(&str) -> Vec<String>,
) -> (Vec<Process>, Vec<String>, Vec<String>) {
    let ports: Vec<(u16, u16)> =
        (0..3).map(|_| (crate::ports::free_port(), crate::ports::free_port())).collect();
    let cluster =
        (0..3).map(|i| format!("m{}=https://127.0.0.1:{}", i + 1, ports[i].1)).collect::<Vec<_>>().join(",");
    let urls: Vec<String> = ports.iter().map(|(c, _)| format!("{client_scheme}://127.0.0.1:{c}")).collect();
    let peer_urls: Vec<String> = ports.iter().map(|(_, p)| format!("https://127.0.0.1:{p}")).collect();
    let mut members = Vec::new();
    for i in 0..3 {
        let name = format!("m{}", i + 1);
        let log = std::fs::File::create(d.join(format!("{name}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(["--name", &name, "--data-dir", d.join(format!("{name}.data")).to_str().unwrap()])
            .args(["--listen-client-urls", &urls[i], "--advertise-client-urls", &urls[i]])
            .args(["--listen-peer-urls", &peer_urls[i], "--initial-advertise-peer-urls", &peer_urls[i]])
            .args(["--initial-cluster", &cluster])
            .args(flags(&name))
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start cairn");
        members.push(Process(child));
    }
    (members, urls, peer_urls)
}
