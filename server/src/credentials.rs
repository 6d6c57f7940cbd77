//! Who a client is: a token from `Authenticate` (sent as gRPC metadata `token`, or in an HTTP
//! `Authorization` header), else the Common Name of the client certificate the TLS handshake
//! verified (etcd's rule with `--client-cert-auth`), else nobody.
//!
//! Tokens are signed, not stored: `{user}.{auth revision}.{expiry}.{mac}`, with the user in
//! hex and the MAC an HMAC-SHA256 under the cluster's token key (drawn when authentication is
//! enabled, kept in the replicated auth store). Any member verifies any member's token, a
//! restart forgets none, and nothing grows with the number of clients. A token names the auth
//! store revision it was issued at; the core refuses it once the store has moved on ("revision
//! of auth store is old"), and clients authenticate again, as with etcd. Expiry (`--auth-token-ttl`,
//! 300 s as etcd's simple tokens) is checked here against this member's clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_core::auth::{AuthInfo, AuthStore};
use cairn_core::Error;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The Common Name of a client certificate the TLS handshake verified, put in each request's
/// extensions by the client port's server (`serve`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCommonName(pub String);

/// What an HTTP request (the v3 JSON gateway, the quota API) brings to say who sent it: the
/// token in its `Authorization` header (as etcd's gateway takes it) and its connection's
/// certificate name.
#[derive(Clone, Debug, Default)]
pub struct HttpCredentials {
    pub token: Option<String>,
    pub common_name: Option<ClientCommonName>,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for HttpCredentials {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        let token = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        Ok(HttpCredentials {
            token: token.map(str::to_string),
            common_name: parts.extensions.get::<ClientCommonName>().cloned(),
        })
    }
}

/// How this member hashes passwords and how long its tokens last.
#[derive(Clone, Copy, Debug)]
pub struct AuthSettings {
    /// bcrypt's cost (`--bcrypt-cost`, etcd's default 10).
    pub bcrypt_cost: u32,
    /// `--auth-token-ttl`.
    pub token_ttl: Duration,
}

impl Default for AuthSettings {
    fn default() -> AuthSettings {
        AuthSettings { bcrypt_cost: 10, token_ttl: Duration::from_secs(300) }
    }
}

type HmacSha256 = Hmac<Sha256>;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

fn mac(key: &[u8], signed: &str) -> Option<HmacSha256> {
    let mut m = HmacSha256::new_from_slice(key).ok()?;
    m.update(signed.as_bytes());
    Some(m)
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A token for `user` as of the store's revision, valid for `ttl` from `now`.
pub fn mint(store: &AuthStore, user: &str, ttl: Duration, now: SystemTime) -> Option<String> {
    let signed = format!("{}.{}.{}", hex(user.as_bytes()), store.revision(), unix_secs(now + ttl));
    let tag = mac(store.token_key(), &signed)?.finalize().into_bytes();
    Some(format!("{signed}.{}", hex(&tag)))
}

/// The user a token names, if the store's key signed it and it has not expired: etcd's
/// "invalid auth token" otherwise.
pub fn verify(store: &AuthStore, token: &str, now: SystemTime) -> Result<AuthInfo, Error> {
    let invalid = Error::InvalidAuthToken;
    let (signed, tag) = token.rsplit_once('.').ok_or(invalid.clone())?;
    let tag = unhex(tag).ok_or(invalid.clone())?;
    mac(store.token_key(), signed).ok_or(invalid.clone())?.verify_slice(&tag).map_err(|_| invalid.clone())?;
    let mut parts = signed.split('.');
    let (Some(user), Some(revision), Some(expiry), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid);
    };
    let user = unhex(user).and_then(|u| String::from_utf8(u).ok()).ok_or(invalid.clone())?;
    let revision: u64 = revision.parse().map_err(|_| invalid.clone())?;
    let expiry: u64 = expiry.parse().map_err(|_| invalid.clone())?;
    if unix_secs(now) >= expiry {
        return Err(invalid);
    }
    Ok(AuthInfo { user, revision })
}

/// Who a request comes from: its token, else its certificate's Common Name (at the store's
/// revision now), else nobody (None). Nobody, too, while authentication is off: the core
/// then checks nothing, and a token is not looked at (etcd ignores it as well).
pub fn identify(
    store: &AuthStore,
    token: Option<&str>,
    common_name: Option<&ClientCommonName>,
) -> Result<Option<AuthInfo>, Error> {
    if !store.is_enabled() {
        return Ok(None);
    }
    match (token.filter(|t| !t.is_empty()), common_name) {
        (Some(token), _) => verify(store, token, SystemTime::now()).map(Some),
        (None, Some(ClientCommonName(cn))) => {
            Ok(Some(AuthInfo { user: cn.clone(), revision: store.revision() }))
        }
        (None, None) => Ok(None),
    }
}

/// The Common Name in a DER certificate's subject, if it has one.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?.to_string();
    Some(cn)
}

/// A password hashed for the auth store (bcrypt, `cost`); hashing takes milliseconds of CPU,
/// so callers run it off the async threads.
pub fn hash_password(password: &str, cost: u32) -> Result<String, Error> {
    bcrypt::hash(password, cost).map_err(|_| Error::AuthFailed)
}

/// Whether `password` is `user`'s (false for a user without a password, or none at all).
pub fn password_matches(store: &AuthStore, user: &str, password: &str) -> bool {
    match store.user(user).and_then(|u| u.password_hash.as_deref()) {
        Some(hash) => bcrypt::verify(password, hash).unwrap_or(false),
        None => false,
    }
}

/// A fresh token key from the OS.
pub fn new_token_key() -> Result<bytes::Bytes, Error> {
    let mut key = [0u8; 32];
    getrandom::getrandom(&mut key)
        .map_err(|e| Error::Raft(format!("no randomness for the token key: {e}")))?;
    Ok(bytes::Bytes::copy_from_slice(&key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::auth::{AuthChange, ROOT};

    fn enabled() -> AuthStore {
        let mut s = AuthStore::default();
        for c in [
            AuthChange::UserAdd { name: ROOT.into(), password_hash: None },
            AuthChange::UserGrantRole { user: ROOT.into(), role: ROOT.into() },
            AuthChange::Enable { token_key: bytes::Bytes::from_static(b"0123456789abcdef") },
        ] {
            assert!(s.apply(&c).is_ok());
        }
        s
    }

    #[test]
    fn a_token_verifies_until_it_expires_and_not_once_altered() {
        let s = enabled();
        let now = SystemTime::now();
        let Some(token) = mint(&s, "al.ice", Duration::from_secs(60), now) else { panic!("minted") };
        assert_eq!(verify(&s, &token, now), Ok(AuthInfo { user: "al.ice".into(), revision: s.revision() }));
        assert_eq!(verify(&s, &token, now + Duration::from_secs(61)), Err(Error::InvalidAuthToken));
        let forged = token.replacen(&hex(b"al.ice"), &hex(b"root"), 1);
        assert_eq!(verify(&s, &forged, now), Err(Error::InvalidAuthToken));
        for bad in ["", ".", "x.y.z.w", "zz", &token[..token.len() - 2]] {
            assert_eq!(verify(&s, bad, now), Err(Error::InvalidAuthToken), "{bad:?}");
        }
        // Another key (authentication disabled and enabled again) voids it.
        let mut other = s.clone();
        assert!(other.apply(&AuthChange::Disable).is_ok());
        assert!(other
            .apply(&AuthChange::Enable { token_key: bytes::Bytes::from_static(b"another") })
            .is_ok());
        assert_eq!(verify(&other, &token, now), Err(Error::InvalidAuthToken));
    }

    #[test]
    fn a_token_comes_before_the_certificate_and_nothing_is_checked_while_auth_is_off() {
        let s = enabled();
        let cn = ClientCommonName("alice".into());
        assert_eq!(identify(&AuthStore::default(), Some("garbage"), Some(&cn)), Ok(None));
        assert_eq!(identify(&s, Some("garbage"), Some(&cn)), Err(Error::InvalidAuthToken));
        assert_eq!(
            identify(&s, None, Some(&cn)),
            Ok(Some(AuthInfo { user: "alice".into(), revision: s.revision() }))
        );
        assert_eq!(identify(&s, None, None), Ok(None));
    }
}
