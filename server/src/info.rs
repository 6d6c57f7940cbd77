//! Who this member is and which cluster it belongs to, as etcd reports it in response headers,
//! MemberList and Status.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

impl From<&cairn_core::Member> for MemberInfo {
    fn from(m: &cairn_core::Member) -> MemberInfo {
        MemberInfo {
            id: m.id,
            name: m.name.clone(),
            peer_urls: m.peer_urls.clone(),
            client_urls: m.client_urls.clone(),
            is_learner: m.learner,
        }
    }
}

/// Every member as this member has applied the configuration, by id (as etcd lists them).
/// This member's own name and client URLs are its flags' until its publication has applied
/// (etcd serves clients only once it has published; Cairn serves at once, and says the same).
pub fn members(info: &ServerInfo, status: &cairn_io_tokio::MemberStatus) -> Vec<MemberInfo> {
    status
        .members
        .values()
        .map(|m| {
            let mut m = MemberInfo::from(m);
            if m.id == info.member_id && m.name.is_empty() {
                m.name = info.name.clone();
                m.client_urls = info.client_urls.clone();
            }
            m
        })
        .collect()
}

#[derive(Clone, Debug)]
pub struct ServerInfo {
    pub cluster_id: u64,
    pub member_id: u64,
    /// This member's name and client URLs, as its flags give them.
    pub name: String,
    pub client_urls: Vec<String>,
    /// The etcd version Cairn reports (clients check it): the API level it implements.
    pub etcd_version: String,
    /// Largest request accepted, in bytes (`--max-request-bytes`).
    pub max_request_bytes: usize,
    /// The member's data directory, whose size Status reports; `None` where there is none.
    pub data_dir: Option<std::path::PathBuf>,
    /// Password hashing and token lifetime.
    pub auth: crate::credentials::AuthSettings,
}

/// Cairn's own version.
pub const CAIRN_VERSION: &str = env!("CARGO_PKG_VERSION");

impl ServerInfo {
    /// The version Status answers: the etcd API level with Cairn's version as semver build
    /// metadata (`3.4.0+cairn.0.1.0`). Clients that compare versions for feature detection
    /// ignore build metadata (semver 2.0.0, section 10), so they see the API level; a person
    /// reading `etcdctl endpoint status` sees what answers.
    pub fn status_version(&self) -> String {
        format!("{}+cairn.{CAIRN_VERSION}", self.etcd_version)
    }
}

/// The bytes the files under `dir` take, walked now (the fjall database, its journals and
/// tables, and the snapshot file: everything the member keeps). Unreadable entries count 0.
pub fn disk_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => disk_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}
