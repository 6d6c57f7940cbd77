//! etcd's auth end to end with etcdctl: users, roles and prefix permissions on a 3-member
//! cluster, enforced by every member; wrong passwords, missing credentials and revoked
//! permissions refused with etcd's errors; the v2 API closed while auth is on; and, over TLS
//! with client-certificate auth on a 3-member cluster with mutual peer TLS, the certificate's
//! Common Name as the user.

#[path = "support/ports.rs"]
mod ports;
mod support;

#[path = "support/certs.rs"]
mod certs;

use std::process::Command;
use std::time::{Duration, Instant};

use certs::{ca, etcdctl, leaf, tls_peer_cluster, write};
use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
use support::Cluster;

fn fast_hashing() -> Vec<String> {
    vec!["--bcrypt-cost".into(), "4".into()]
}

/// etcdctl at member `i` as `user` (`name:password`), or without credentials.
fn ctl(c: &Cluster, i: usize, user: Option<&str>, args: &[&str]) -> (bool, String) {
    let mut all: Vec<&str> = vec![];
    let flag;
    if let Some(u) = user {
        flag = format!("--user={u}");
        all.push(&flag);
    }
    all.extend_from_slice(args);
    let out = c.ctl_at(&c.endpoint(i), &all, None);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn must(c: &Cluster, i: usize, user: Option<&str>, args: &[&str]) -> String {
    let (ok, text) = ctl(c, i, user, args);
    assert!(ok, "etcdctl {args:?} as {user:?} failed: {text}");
    text
}

fn refused(c: &Cluster, i: usize, user: Option<&str>, args: &[&str], why: &str) {
    let (ok, text) = ctl(c, i, user, args);
    assert!(!ok && text.contains(why), "etcdctl {args:?} as {user:?}: wanted {why:?}, got {text}");
}

const ROOT: Option<&str> = Some("root:rootpw");
const ALICE: Option<&str> = Some("alice:alicepw");

#[test]
fn users_roles_and_prefix_permissions_are_enforced_by_every_member() {
    let c = Cluster::start_with(&[fast_hashing(), fast_hashing(), fast_hashing()]);
    must(&c, 0, None, &["put", "/other/x", "before"]);
    for args in [
        &["user", "add", "root:rootpw"][..],
        &["user", "grant-role", "root", "root"],
        &["user", "add", "alice:alicepw"],
        &["role", "add", "app"],
        &["role", "grant-permission", "app", "readwrite", "/app/", "--prefix"],
        &["user", "grant-role", "alice", "app"],
        &["auth", "enable"],
    ] {
        must(&c, 0, None, args);
    }
    for i in 0..3 {
        refused(&c, i, None, &["put", "/app/x", "1"], "etcdserver: user name is empty");
        must(&c, i, ALICE, &["put", "/app/x", &i.to_string()]);
        assert!(must(&c, i, ALICE, &["get", "/app/x"]).contains(&i.to_string()));
        refused(&c, i, ALICE, &["put", "/other/y", "1"], "etcdserver: permission denied");
        refused(&c, i, ALICE, &["get", "/other/x"], "etcdserver: permission denied");
        refused(&c, i, ALICE, &["get", "/", "--prefix"], "etcdserver: permission denied");
        refused(
            &c,
            i,
            Some("alice:wrong"),
            &["get", "/app/x"],
            "authentication failed, invalid user ID or password",
        );
        refused(&c, i, ALICE, &["user", "list"], "etcdserver: permission denied");
        refused(&c, i, None, &["compaction", "1"], "etcdserver: user name is empty");
        assert!(must(&c, i, ROOT, &["get", "/other/x"]).contains("before"));
    }
    assert_eq!(
        must(&c, 1, ROOT, &["user", "list"]).split_whitespace().collect::<Vec<_>>(),
        ["alice", "root"]
    );
    let role = must(&c, 2, ROOT, &["role", "get", "app"]);
    assert!(role.contains("[/app/, /app0) (prefix /app/)"), "{role}");
    assert!(must(&c, 0, ALICE, &["user", "get", "alice"]).contains("Roles: app"));
    refused(&c, 0, ROOT, &["user", "delete", "root"], "etcdserver: invalid auth management");
    refused(&c, 0, ROOT, &["role", "get", "nope"], "etcdserver: role name not found");
    refused(&c, 0, ROOT, &["user", "add", "alice:x"], "etcdserver: user name already exists");

    // The v2 keys API is closed while auth is on; /health still answers.
    let curl = |args: &[&str]| {
        let out = Command::new("curl").args(["-s", "-m", "10"]).args(args).output().expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let url = |path: &str| format!("http://{}{path}", c.endpoint(0));
    let v2 = curl(&["-w", " %{http_code}", &url("/v2/keys/foo")]);
    assert!(v2.contains("\"errorCode\":110") && v2.ends_with(" 401"), "{v2}");
    assert_eq!(curl(&[&url("/health")]), "{\"health\":\"true\"}");

    // The JSON gateway takes the token in the Authorization header.
    let auth =
        curl(&["-XPOST", "-d", r#"{"name":"alice","password":"alicepw"}"#, &url("/v3/auth/authenticate")]);
    let token = auth.split("\"token\":\"").nth(1).and_then(|t| t.split('"').next()).unwrap_or_default();
    assert!(!token.is_empty(), "{auth}");
    let range = r#"{"key":"L2FwcC94"}"#; // /app/x
    assert!(curl(&["-XPOST", "-H", &format!("Authorization: {token}"), "-d", range, &url("/v3/kv/range")])
        .contains("\"kvs\""));
    let denied = curl(&["-XPOST", "-d", range, &url("/v3/kv/range")]);
    assert!(denied.contains("user name is empty"), "{denied}");

    // The quota API (cairn quota) needs the root role.
    let quota = |user: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
        cmd.args(["quota", "set", "/app/", "--keys", "10", "--endpoint", &url("")]);
        if let Some(u) = user {
            cmd.args(["--user", u]);
        }
        let out = cmd.output().expect("cairn quota");
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    let (ok, text) = quota(None);
    assert!(!ok && text.contains("user name is empty"), "{text}");
    let (ok, text) = quota(Some("alice:alicepw"));
    assert!(!ok && text.contains("permission denied"), "{text}");
    let (ok, text) = quota(Some("root:rootpw"));
    assert!(ok && text.contains("/app/"), "{text}");

    // A revoked permission is refused by every member.
    must(&c, 0, ROOT, &["role", "revoke-permission", "app", "/app/", "--prefix"]);
    for i in 0..3 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (ok, text) = ctl(&c, i, ALICE, &["get", "/app/x"]);
            if !ok && text.contains("permission denied") {
                break;
            }
            assert!(Instant::now() < deadline, "member {i} still serves the revoked permission: {text}");
            std::thread::sleep(Duration::from_millis(100));
        }
        refused(&c, i, ALICE, &["put", "/app/x", "late"], "etcdserver: permission denied");
    }
    must(&c, 0, ROOT, &["auth", "disable"]);
    must(&c, 1, None, &["put", "/app/x", "open again"]);
    must(&c, 0, None, &["auth", "enable"]);

    // The readiness probe, which has no credentials, still proves a quorum with auth on.
    let readyz = url("/readyz?verbose");
    let ready = || curl(&["-w", " %{http_code}", &readyz]);
    assert!(ready().ends_with(" 200"), "{}", ready());
    let mut c = c;
    c.kill(1);
    c.kill(2);
    let r = ready();
    assert!(r.ends_with(" 503") && r.contains("[-]linearizable_read failed"), "{r}");
}

/// A 3-member cluster with client TLS (client-certificate auth) and mutual peer TLS, auth on:
/// each member takes the certificate's Common Name as the user.
#[test]
fn with_client_cert_auth_the_certificates_common_name_is_the_user_on_every_member() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let trusted = ca("cairn test CA");
    write(d, "ca", &trusted);
    write(d, "server", &leaf(&trusted, "cairn", &[ServerAuth, ClientAuth]));
    write(d, "root", &leaf(&trusted, "root", &[ClientAuth]));
    write(d, "alice", &leaf(&trusted, "alice", &[ClientAuth]));
    let p = |name: &str| d.join(name).to_str().unwrap().to_string();
    let (_members, urls, _) = tls_peer_cluster(d, "https", |_| {
        [
            "--cert-file",
            "server.pem",
            "--key-file",
            "server-key.pem",
            "--trusted-ca-file",
            "ca.pem",
            "--client-cert-auth",
            "--bcrypt-cost",
            "4",
            "--peer-cert-file",
            "server.pem",
            "--peer-key-file",
            "server-key.pem",
            "--peer-trusted-ca-file",
            "ca.pem",
            "--peer-client-cert-auth",
        ]
        .iter()
        .map(|a| if a.ends_with(".pem") { p(a) } else { a.to_string() })
        .collect()
    });
    let url = |i: usize| urls[i].clone();
    let as_cert = |who: &str| {
        vec![
            format!("--cacert={}", p("ca.pem")),
            format!("--cert={}", p(&format!("{who}.pem"))),
            format!("--key={}", p(&format!("{who}-key.pem"))),
        ]
    };
    let (root, alice) = (as_cert("root"), as_cert("alice"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !etcdctl(&url(0), &root, &["put", "/app/x", "1"]).status.success() {
        assert!(
            Instant::now() < deadline,
            "no TLS put: {}",
            std::fs::read_to_string(d.join("m1.log")).unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let run = |i: usize, tls: &[String], args: &[&str]| {
        let out = etcdctl(&url(i), tls, args);
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    for args in [
        &["user", "add", "root:rootpw"][..],
        &["user", "grant-role", "root", "root"],
        &["user", "add", "alice:unused"],
        &["role", "add", "app"],
        &["role", "grant-permission", "app", "read", "/app/", "--prefix"],
        &["user", "grant-role", "alice", "app"],
        &["auth", "enable"],
    ] {
        let (ok, text) = run(0, &root, args);
        assert!(ok, "{args:?}: {text}");
    }
    for i in 0..3 {
        // No password given: the certificate names the user.
        let (ok, text) = run(i, &alice, &["get", "/app/x", "--print-value-only"]);
        let expected = if i == 0 { "1".to_string() } else { format!("by root via m{i}") };
        assert!(ok && text.trim() == expected, "m{}: {text}", i + 1);
        let (ok, text) = run(i, &alice, &["put", "/app/x", "2"]);
        assert!(!ok && text.contains("permission denied"), "read-only: {text}");
        let (ok, text) = run(i, &alice, &["get", "/other"]);
        assert!(!ok && text.contains("permission denied"), "{text}");
        let (ok, text) = run(i, &root, &["put", "/app/x", &format!("by root via m{}", i + 1)]);
        assert!(ok, "root by certificate: {text}");
    }
    // A wrong password is refused, certificate or not.
    let (ok, text) = run(1, &[&alice[..], &["--user=alice:wrong".to_string()]].concat(), &["get", "/app/x"]);
    assert!(!ok && text.contains("authentication failed"), "{text}");
}
