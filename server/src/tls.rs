//! TLS on the client port, with etcd's flags: `--cert-file` and `--key-file` (the member's
//! certificate chain and key, PEM), `--trusted-ca-file` (PEM CAs that sign client
//! certificates), `--client-cert-auth` (a client must present a certificate those CAs signed;
//! without it, the handshake is refused). A listener whose URL is `https://` speaks TLS; an
//! `http://` one beside it stays plaintext, as in etcd.
//!
//! ALPN offers `h2` and `http/1.1`: gRPC clients (etcdctl) need `h2`; curl and the v2 API may
//! speak either. A handshake that fails (no certificate, one from another CA, an expired one,
//! plaintext sent to the TLS port) closes the connection; the failures are counted and logged
//! at most once per interval with the latest reason, so a client that keeps failing cannot
//! flood the log.
//!
//! `--cipher-suites` (comma-separated IANA names, as etcd's) limits the TLS 1.2 suites offered
//! on both ports; TLS 1.3's are always offered, as Go's TLS (and so etcd) does.
//!
//! Beyond etcd: the certificate and key are reloaded when their files change (rotation without
//! a restart), on the client port and on the peer port (both the certificate a member serves
//! and the one it presents when it connects to a peer). A handshake looks at the files' modification times at most once per
//! `RELOAD_CHECK`; the next handshake after a change uses the new pair. A new pair that does not
//! load (a half-written file, a key that does not match) leaves the old one in use and is
//! logged once per change.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

/// How often, at most, a handshake checks whether the certificate files changed.
pub const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// What the TLS flags say.
#[derive(Clone, Debug, Default)]
pub struct TlsFlags {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub trusted_ca_file: Option<PathBuf>,
    pub client_cert_auth: bool,
    /// TLS 1.2 suites to offer, by IANA name (`--cipher-suites`); empty: rustls's defaults.
    pub cipher_suites: Vec<String>,
    /// `--peer-auto-tls`: peers present self-signed certificates and do not check each
    /// other's (etcd's rule: encryption without authentication, for trying TLS out).
    pub skip_peer_verification: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("an https:// listener needs --cert-file and --key-file")]
    MissingCertificate,
    #[error("--client-cert-auth needs --trusted-ca-file (the CAs that sign client certificates)")]
    MissingCa,
    #[error("{path}: {what}")]
    File { path: String, what: String },
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error("--cipher-suites: {name} is not a TLS 1.2 suite Cairn offers (these are: {supported})")]
    UnknownCipherSuite { name: String, supported: String },
}

fn file_error(path: &Path, what: impl std::fmt::Display) -> TlsError {
    TlsError::File { path: path.display().to_string(), what: what.to_string() }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no PEM certificate in it"));
    }
    Ok(certs)
}

/// The client port's TLS configuration from the flags.
pub fn server_config(flags: &TlsFlags) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = base_server_config(flags)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The peer port's TLS, both ways, from the `--peer-*` flags (as `TlsFlags`): peers present
/// `cert_file` when they connect, and check that the peer they reach presents a certificate
/// the trusted CAs signed, for its IP address. With `client_cert_auth`, the accepting side
/// requires one too (mutual TLS).
pub fn peer_tls(flags: &TlsFlags) -> Result<cairn_io_tokio::transport::PeerTls, TlsError> {
    let server = Arc::new(base_server_config(flags)?);
    let (Some(cert_file), Some(key_file)) = (&flags.cert_file, &flags.key_file) else {
        return Err(TlsError::MissingCertificate);
    };
    // Presented to the peers this member connects to, reloaded as the server side's is.
    let resolver = Arc::new(ReloadingCert::load(cert_file.clone(), key_file.clone())?);
    let provider = provider(&flags.cipher_suites)?;
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match (&flags.trusted_ca_file, flags.skip_peer_verification) {
        (_, true) => builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyPeer(provider))),
        (None, false) => return Err(TlsError::MissingCa),
        (Some(ca_file), false) => {
            let mut roots = RootCertStore::empty();
            for ca in certificates(ca_file)? {
                roots.add(ca).map_err(|e| file_error(ca_file, e))?;
            }
            builder.with_root_certificates(roots)
        }
    };
    let client = builder.with_client_cert_resolver(resolver);
    Ok(cairn_io_tokio::transport::PeerTls {
        acceptor: tokio_rustls::TlsAcceptor::from(server),
        connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
    })
}

/// ring's suites, the TLS 1.2 ones limited to `names` when there are any.
fn provider(names: &[String]) -> Result<Arc<rustls::crypto::CryptoProvider>, TlsError> {
    // ring: no cmake or C toolchain beyond cc to build, unlike aws-lc-rs, rustls's default
    // (whose post-quantum key exchange is what the deprecation is about).
    #[allow(deprecated)]
    let mut provider = rustls::crypto::ring::default_provider();
    if names.is_empty() {
        return Ok(Arc::new(provider));
    }
    let name_of = |s: &rustls::SupportedCipherSuite| s.suite().as_str().unwrap_or("").to_string();
    let tls12: Vec<String> = provider
        .cipher_suites
        .iter()
        .filter(|s| s.version() == &rustls::version::TLS12)
        .map(name_of)
        .collect();
    for name in names {
        if !tls12.contains(name) {
            return Err(TlsError::UnknownCipherSuite { name: name.clone(), supported: tls12.join(", ") });
        }
    }
    provider.cipher_suites.retain(|s| s.version() == &rustls::version::TLS13 || names.contains(&name_of(s)));
    Ok(Arc::new(provider))
}

/// `--peer-auto-tls`: any certificate a peer presents is accepted (the handshake's signature
/// is still checked, so the connection is encrypted to whoever holds that certificate's key).
#[derive(Debug)]
struct AnyPeer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyPeer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn base_server_config(flags: &TlsFlags) -> Result<ServerConfig, TlsError> {
    let (Some(cert_file), Some(key_file)) = (&flags.cert_file, &flags.key_file) else {
        return Err(TlsError::MissingCertificate);
    };
    let resolver = Arc::new(ReloadingCert::load(cert_file.clone(), key_file.clone())?);
    let provider = provider(&flags.cipher_suites)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match (&flags.trusted_ca_file, flags.client_cert_auth) {
        // --peer-auto-tls: peers' self-signed certificates are not checked (etcd's rule).
        (_, _) if flags.skip_peer_verification => builder.with_no_client_auth(),
        (None, true) => return Err(TlsError::MissingCa),
        (None, false) => builder.with_no_client_auth(),
        (Some(ca_file), required) => {
            let mut roots = RootCertStore::empty();
            for ca in certificates(ca_file)? {
                roots.add(ca).map_err(|e| file_error(ca_file, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if required { verifier } else { verifier.allow_unauthenticated() };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| TlsError::Config(e.to_string()))?)
        }
    };
    Ok(builder.with_cert_resolver(resolver))
}

/// The certificate and key files, as last loaded, reloaded when they change.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    state: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    certified: Arc<CertifiedKey>,
    /// The files' modification times the pair in use (or the last failed attempt) came from.
    seen: (Option<SystemTime>, Option<SystemTime>),
    checked: Instant,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn certified_key(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = certificates(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| file_error(key_file, e))?;
    let signing =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| file_error(key_file, e))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| file_error(key_file, format!("does not match {}: {e}", cert_file.display())))?;
    Ok(certified)
}

impl ReloadingCert {
    pub fn load(cert_file: PathBuf, key_file: PathBuf) -> Result<ReloadingCert, TlsError> {
        let seen = (modified(&cert_file), modified(&key_file));
        let certified = Arc::new(certified_key(&cert_file, &key_file)?);
        Ok(ReloadingCert {
            cert_file,
            key_file,
            state: Mutex::new(Loaded { certified, seen, checked: Instant::now() }),
        })
    }

    /// The pair to use now, reloaded first if the files changed.
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        let mut st = self.state.lock().ok()?;
        if st.checked.elapsed() >= RELOAD_CHECK {
            st.checked = Instant::now();
            let now = (modified(&self.cert_file), modified(&self.key_file));
            if now != st.seen {
                st.seen = now;
                match certified_key(&self.cert_file, &self.key_file) {
                    Ok(certified) => {
                        st.certified = Arc::new(certified);
                        tracing::info!(cert_file = %self.cert_file.display(), "certificate reloaded");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "certificate changed but does not load; the old one stays in use")
                    }
                }
            }
        }
        Some(st.certified.clone())
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

impl rustls::client::ResolvesClientCert for ReloadingCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.current()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// `--auto-tls`: a self-signed certificate for `hosts` (IP addresses or names) in `dir`
/// (`cert.pem`, `key.pem`), made once and reused on later starts, as etcd keeps its in
/// `<data-dir>/fixtures/client`. Clients cannot check it against a CA: for trying TLS out
/// (`etcdctl --insecure-skip-tls-verify`), not for production.
pub fn self_signed(dir: &Path, hosts: &[String]) -> Result<(PathBuf, PathBuf), TlsError> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e))?;
    let mut names: Vec<String> = hosts.to_vec();
    names.push("localhost".into());
    let made = rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Config(e.to_string()))?;
    std::fs::write(&cert, made.cert.pem()).map_err(|e| file_error(&cert, e))?;
    std::fs::write(&key, made.key_pair.serialize_pem()).map_err(|e| file_error(&key, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600));
    }
    Ok((cert, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cipher_suites_limit_tls12_and_keep_tls13() {
        let all = provider(&[]).map(|p| p.cipher_suites.len()).unwrap_or(0);
        let one = ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".to_string()];
        let Ok(limited) = provider(&one) else { panic!("a suite ring offers") };
        let names: Vec<&str> = limited.cipher_suites.iter().filter_map(|s| s.suite().as_str()).collect();
        assert!(names.contains(&"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"));
        assert!(!names.contains(&"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"));
        assert!(names.contains(&"TLS13_AES_128_GCM_SHA256"), "TLS 1.3 stays: {names:?}");
        assert!(limited.cipher_suites.len() < all);
        let bad = provider(&["TLS_RSA_WITH_RC4_128_SHA".to_string()]);
        assert!(
            matches!(&bad, Err(TlsError::UnknownCipherSuite { name, .. }) if name == "TLS_RSA_WITH_RC4_128_SHA")
        );
    }
}
