//! TLS on the client port with client-certificate auth, end to end with etcdctl and curl:
//! a certificate from the trusted CA is served, no certificate, one from another CA, and
//! plaintext are refused at the handshake, and the refusals are logged.

#[path = "support/ports.rs"]
mod ports;

#[path = "support/certs.rs"]
mod certs;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use certs::{ca, etcdctl, leaf, write, Process};
use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};

/// A single member whose client URL is https://, its data and log in `d`, started with `tls`
/// flags; the member and its client URL.
fn start_member(d: &Path, tls: &[&str]) -> (Process, String) {
    let (client, peer) = (ports::free_port(), ports::free_port());
    let url = format!("https://127.0.0.1:{client}");
    let log = std::fs::File::create(d.join("member.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("--data-dir")
        .arg(d.join("data"))
        .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args(["--initial-cluster", &format!("default=http://127.0.0.1:{peer}")])
        .args(tls)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start cairn");
    (Process(child), url)
}

#[test]
fn client_certificates_from_the_trusted_ca_are_served_and_everything_else_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let trusted = ca("cairn test CA");
    let foreign = ca("another CA");
    write(d, "ca", &trusted);
    write(d, "server", &leaf(&trusted, "cairn", &[ServerAuth]));
    write(d, "client", &leaf(&trusted, "root", &[ClientAuth]));
    write(d, "stranger", &leaf(&foreign, "root", &[ClientAuth]));
    let p = |name: &str| d.join(name).to_str().unwrap().to_string();

    let (_member, url) = start_member(
        d,
        &["--cert-file", &p("server.pem"), "--key-file", &p("server-key.pem")]
            .into_iter()
            .chain(["--trusted-ca-file", &p("ca.pem"), "--client-cert-auth"])
            .collect::<Vec<_>>(),
    );
    let good = vec![
        format!("--cacert={}", p("ca.pem")),
        format!("--cert={}", p("client.pem")),
        format!("--key={}", p("client-key.pem")),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    while !etcdctl(&url, &good, &["put", "k", "over tls"]).status.success() {
        assert!(
            Instant::now() < deadline,
            "no TLS put within 30 s: {}",
            std::fs::read_to_string(d.join("member.log")).unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let got = etcdctl(&url, &good, &["get", "k", "--print-value-only"]);
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "over tls");

    // No client certificate; one from another CA; plaintext to the TLS port.
    let no_cert = vec![format!("--cacert={}", p("ca.pem"))];
    assert!(!etcdctl(&url, &no_cert, &["get", "k"]).status.success());
    let stranger = vec![
        format!("--cacert={}", p("ca.pem")),
        format!("--cert={}", p("stranger.pem")),
        format!("--key={}", p("stranger-key.pem")),
    ];
    assert!(!etcdctl(&url, &stranger, &["get", "k"]).status.success());
    let plaintext = etcdctl(&url.replacen("https://", "http://", 1), &[], &["get", "k"]);
    assert!(!plaintext.status.success());

    // curl: the v2 API and /health over the same port.
    let curl = |extra: &[&str], path: &str| {
        Command::new("curl")
            .args(["-s", "-m", "10", "--cacert", &p("ca.pem")])
            .args(extra)
            .arg(format!("{url}{path}"))
            .output()
            .expect("curl")
    };
    let cert_args = ["--cert", &p("client.pem"), "--key", &p("client-key.pem")];
    let health = curl(&cert_args, "/health");
    assert_eq!(String::from_utf8_lossy(&health.stdout), "{\"health\":\"true\"}");
    let v2 = curl(&[&cert_args[..], &["-XPUT", "-d", "value=v"]].concat(), "/v2/keys/tls");
    assert!(String::from_utf8_lossy(&v2.stdout).contains("\"action\":\"set\""), "{v2:?}");
    assert!(!curl(&[], "/health").status.success(), "curl without a certificate is refused");

    // The refusals are in the log, with why.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = std::fs::read_to_string(d.join("member.log")).unwrap();
        if log.contains("TLS handshakes failed") {
            break;
        }
        assert!(Instant::now() < deadline, "no refusal logged: {log}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The subject of the certificate the member presents now, as curl reports it.
fn served_subject(url: &str, ca: &str) -> String {
    let out = Command::new("curl")
        .args(["-sv", "-m", "10", "--cacert", ca, &format!("{url}/health")])
        .output()
        .expect("curl");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    err.lines().find(|l| l.contains("subject:")).map(|l| l.trim().to_string()).unwrap_or(err)
}

#[test]
fn a_rotated_certificate_is_used_without_a_restart_and_a_bad_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let trusted = ca("cairn test CA");
    write(d, "ca", &trusted);
    write(d, "server", &leaf(&trusted, "first", &[ServerAuth]));
    let p = |name: &str| d.join(name).to_str().unwrap().to_string();
    let (_member, url) =
        start_member(d, &["--cert-file", &p("server.pem"), "--key-file", &p("server-key.pem")]);
    let wait_for = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let subject = served_subject(&url, &p("ca.pem"));
            if subject.contains(want) {
                return;
            }
            assert!(Instant::now() < deadline, "still serving {subject:?}, not CN={want}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait_for("first");
    // Rotated: the next handshakes present the new certificate.
    write(d, "server", &leaf(&trusted, "second", &[ServerAuth]));
    wait_for("second");
    // A broken file: the old certificate stays in use, and the log says why.
    std::fs::write(d.join("server.pem"), "not a certificate").unwrap();
    std::thread::sleep(Duration::from_millis(1_500));
    wait_for("second");
    let log = std::fs::read_to_string(d.join("member.log")).unwrap();
    assert!(log.contains("certificate changed but does not load"), "{log}");
}

#[test]
fn auto_tls_serves_with_a_self_signed_certificate_kept_in_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_member, url) = start_member(d, &["--auto-tls"]);
    // etcdctl 3.4 skips verification only with both flags (as against etcd's --auto-tls).
    let skip = vec!["--insecure-skip-tls-verify".to_string(), "--insecure-transport=false".to_string()];
    let deadline = Instant::now() + Duration::from_secs(30);
    while !etcdctl(&url, &skip, &["put", "k", "v"]).status.success() {
        assert!(Instant::now() < deadline, "{}", std::fs::read_to_string(d.join("member.log")).unwrap());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(d.join("data/fixtures/client/cert.pem").exists());
    // Without skipping verification, the self-signed certificate is not trusted.
    assert!(!etcdctl(&url, &[], &["get", "k"]).status.success());
}

/// `--cipher-suites`: TLS 1.2 clients get only the suites named; TLS 1.3 is unaffected; a name
/// Cairn does not offer stops the member at start with a clear error.
#[test]
fn cipher_suites_limit_what_tls12_clients_may_use() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let trusted = ca("cairn test CA");
    write(d, "ca", &trusted);
    write(d, "server", &leaf(&trusted, "cairn", &[ServerAuth]));
    let p = |name: &str| d.join(name).to_str().unwrap().to_string();
    let (_member, url) = start_member(
        d,
        &[
            "--cert-file",
            &p("server.pem"),
            "--key-file",
            &p("server-key.pem"),
            "--cipher-suites",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        ],
    );
    let curl = |extra: &[&str]| {
        Command::new("curl")
            .args(["-s", "-m", "10", "--cacert", &p("ca.pem")])
            .args(extra)
            .arg(format!("{url}/health"))
            .output()
            .expect("curl")
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !curl(&[]).status.success() {
        assert!(Instant::now() < deadline, "{}", std::fs::read_to_string(d.join("member.log")).unwrap());
        std::thread::sleep(Duration::from_millis(200));
    }
    let allowed = curl(&["--tls-max", "1.2", "--ciphers", "ECDHE-ECDSA-AES128-GCM-SHA256"]);
    assert!(allowed.status.success(), "{allowed:?}");
    let other = curl(&["--tls-max", "1.2", "--ciphers", "ECDHE-ECDSA-AES256-GCM-SHA384"]);
    assert!(!other.status.success(), "a suite not named was accepted");

    let bad = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("--data-dir")
        .arg(d.join("bad"))
        .args([
            "--listen-client-urls",
            "https://127.0.0.1:0",
            "--advertise-client-urls",
            "https://127.0.0.1:1",
        ])
        .args(["--cert-file", &p("server.pem"), "--key-file", &p("server-key.pem")])
        .args(["--cipher-suites", "TLS_RSA_WITH_RC4_128_SHA"])
        .output()
        .expect("cairn");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("TLS_RSA_WITH_RC4_128_SHA is not a TLS 1.2 suite"),
        "{err}"
    );
}
