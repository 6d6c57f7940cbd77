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

#[derive(Clone, Debug)]
pub struct ServerInfo {
    pub cluster_id: u64,
    pub member_id: u64,
    pub members: Vec<MemberInfo>,
    /// The etcd version Cairn reports (clients check it): the API level it implements.
    pub etcd_version: String,
    /// Largest request accepted, in bytes (`--max-request-bytes`).
    pub max_request_bytes: usize,
}
