//! The Maintenance service: what `etcdctl endpoint status / hashkv / health`, `alarm list`
//! and `defrag` ask for.
//!
//! - Status: version (`ServerInfo::status_version`), leader, Raft indexes and term from the
//!   member's status; `dbSize` and `dbSizeInUse` are the bytes the member's data directory
//!   takes on disk.
//! - Hash and HashKV: a hash of the key-value pairs live at a revision (see `KvHash`). It is
//!   deterministic and equal on members that hold the same data, which is what
//!   `etcdctl endpoint hashkv` is for, but it is not etcd's function (etcd hashes its bolt
//!   buckets, history included), so values differ from etcd's.
//! - Alarm: list, raise and lift alarms, through the log (`cairn_core::alarm`); Status lists
//!   the alarms up among its errors, as etcd's does.
//! - Defragment: there is nothing to defragment; it succeeds at once.
//! - Snapshot: a backup of the member's state (`crate::backup`): the member builds a snapshot
//!   a step at a time while it goes on serving, then it streams in `SNAPSHOT_CHUNK_BYTES`
//!   messages, each saying how many bytes remain, the file's SHA-256 last. `etcdctl snapshot
//!   save` writes it as is; `cairn snapshot status|restore` read it.
//! - MoveLeader: Raft leadership transfer to the voter named.

use std::pin::Pin;

use bytes::Bytes;
use cairn_core::kv::{RangeRequest, SortOrder, SortTarget};
use cairn_core::{Request, ResponseBody};
use futures::Stream;
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

use super::error::unexpected;
use super::pb::etcdserverpb as pb;
use super::Ctx;
use crate::kv_hash::KvHash;
use cairn_core::auth::AuthInfo;

/// Keys read per page while hashing, bounding the memory one hash request holds.
const HASH_PAGE_KEYS: i64 = 1000;

/// Bytes of backup per Snapshot message (etcd's 32 KiB).
const SNAPSHOT_CHUNK_BYTES: usize = 32 * 1024;

pub(crate) struct MaintenanceService {
    ctx: Ctx,
}

impl MaintenanceService {
    pub(crate) fn new(ctx: Ctx) -> MaintenanceService {
        MaintenanceService { ctx }
    }

    /// Hashes the key-value pairs live at `revision` (0: the current one), read from this
    /// member's own state a page at a time. Returns the hash and the revision hashed.
    async fn hash_store(&self, who: Option<AuthInfo>, revision: i64) -> Result<(u32, i64), Status> {
        let mut hash = KvHash::new();
        let mut req = RangeRequest {
            key: Bytes::from_static(&[0]),
            range_end: Bytes::from_static(&[0]),
            limit: HASH_PAGE_KEYS,
            revision,
            sort_order: SortOrder::Ascend,
            sort_target: SortTarget::Key,
            serializable: true,
            ..Default::default()
        };
        loop {
            let resp = self.ctx.request(who.clone(), Request::Range(req.clone())).await?;
            let page = match resp.body {
                ResponseBody::Range(r) => r,
                other => return Err(unexpected("range", &other)),
            };
            // Later pages read at the revision the first one did.
            req.revision = resp.header.revision;
            for kv in &page.kvs {
                hash.add(kv);
            }
            match page.kvs.last() {
                Some(last) if page.more => {
                    let mut next = last.key.to_vec();
                    next.push(0);
                    req.key = next.into();
                }
                _ => return Ok((hash.finish(), req.revision)),
            }
        }
    }
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<pb::SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::maintenance_server::Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        req: GrpcRequest<pb::AlarmRequest>,
    ) -> Result<GrpcResponse<pb::AlarmResponse>, Status> {
        use cairn_core::alarm::{AlarmAction as Action, AlarmKind};
        use pb::alarm_request::AlarmAction;
        let who = self.ctx.who(&req)?;
        let req = req.into_inner();
        let action = match AlarmAction::try_from(req.action) {
            Ok(AlarmAction::Get) => Action::Get,
            Ok(AlarmAction::Activate) => Action::Activate,
            Ok(AlarmAction::Deactivate) => Action::Deactivate,
            Err(e) => return Err(Status::invalid_argument(format!("etcdserver: unknown alarm action: {e}"))),
        };
        let kind = match pb::AlarmType::try_from(req.alarm) {
            Ok(pb::AlarmType::None) => None,
            Ok(pb::AlarmType::Nospace) => Some(AlarmKind::NoSpace),
            Ok(pb::AlarmType::Corrupt) => Some(AlarmKind::Corrupt),
            Err(e) => return Err(Status::invalid_argument(format!("etcdserver: unknown alarm type: {e}"))),
        };
        let r = self.ctx.request(who, Request::Alarm { action, member: req.member_id, kind }).await?;
        let ResponseBody::Alarms(alarms) = r.body else {
            return Err(unexpected("alarm", &r.body));
        };
        let alarms = alarms.iter().map(alarm_member).collect();
        // etcd answers alarm requests without a header.
        Ok(GrpcResponse::new(pb::AlarmResponse { header: None, alarms }))
    }

    async fn status(
        &self,
        _req: GrpcRequest<pb::StatusRequest>,
    ) -> Result<GrpcResponse<pb::StatusResponse>, Status> {
        let st = self.ctx.node.status();
        let mut errors = vec![];
        if st.leader == 0 {
            // As etcd's Status reports it.
            errors.push(cairn_core::Error::NoLeader.to_string());
        }
        // Each alarm up, as etcd's Status lists them.
        for a in &st.alarms {
            let name = match a.kind {
                cairn_core::alarm::AlarmKind::NoSpace => "NOSPACE",
                cairn_core::alarm::AlarmKind::Corrupt => "CORRUPT",
            };
            errors.push(format!("memberID:{} alarm:{name} ", a.member));
        }
        let info = &self.ctx.info;
        // What the member keeps on disk; in use, what its store holds as the space quota
        // counts it (`Mvcc::bytes`: compaction frees it at once, no defragment needed).
        let db_size = match info.data_dir.clone() {
            Some(dir) => {
                tokio::task::spawn_blocking(move || super::super::info::disk_bytes(&dir)).await.unwrap_or(0)
            }
            None => 0,
        } as i64;
        let is_learner = st.is_learner;
        Ok(GrpcResponse::new(pb::StatusResponse {
            header: Some(super::convert::header(info, &st, None)),
            version: info.status_version(),
            db_size,
            leader: st.leader,
            raft_index: st.commit_index,
            raft_term: st.term,
            raft_applied_index: st.applied_index,
            errors,
            db_size_in_use: st.store_bytes as i64,
            is_learner,
        }))
    }

    async fn defragment(
        &self,
        req: GrpcRequest<pb::DefragmentRequest>,
    ) -> Result<GrpcResponse<pb::DefragmentResponse>, Status> {
        self.ctx.require_root(&req)?;
        // etcd's defragment answer has no header.
        Ok(GrpcResponse::new(pb::DefragmentResponse { header: None }))
    }

    async fn hash(
        &self,
        req: GrpcRequest<pb::HashRequest>,
    ) -> Result<GrpcResponse<pb::HashResponse>, Status> {
        self.ctx.require_root(&req)?;
        let (hash, revision) = self.hash_store(self.ctx.who(&req)?, 0).await?;
        let mut header = self.ctx.header(None);
        if let Some(h) = header.as_mut() {
            h.revision = revision;
        }
        Ok(GrpcResponse::new(pb::HashResponse { header, hash }))
    }

    async fn hash_kv(
        &self,
        req: GrpcRequest<pb::HashKvRequest>,
    ) -> Result<GrpcResponse<pb::HashKvResponse>, Status> {
        self.ctx.require_root(&req)?;
        let who = self.ctx.who(&req)?;
        let requested = req.into_inner().revision;
        // etcd refuses to hash at the compacted revision too (its history below the revision's
        // keys is gone), though a range there is served.
        let compacted_revision = self.ctx.node.status().compacted_revision;
        if requested > 0 && requested <= compacted_revision {
            return Err(super::error::status(&cairn_core::Error::Compacted { compacted_revision }));
        }
        let (hash, revision) = self.hash_store(who, requested).await?;
        let st = self.ctx.node.status();
        let mut header = super::convert::header(&self.ctx.info, &st, None);
        header.revision = revision;
        Ok(GrpcResponse::new(pb::HashKvResponse {
            header: Some(header),
            hash,
            compact_revision: st.compacted_revision,
        }))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(
        &self,
        req: GrpcRequest<pb::SnapshotRequest>,
    ) -> Result<GrpcResponse<Self::SnapshotStream>, Status> {
        let r = self.ctx.request(self.ctx.who(&req)?, Request::Backup).await?;
        let ResponseBody::Backup { data, index, term, revision } = r.body else {
            return Err(unexpected("backup", &r.body));
        };
        let info = &self.ctx.info;
        let origin = crate::backup::Origin {
            index,
            term,
            revision,
            cluster_id: info.cluster_id,
            member_id: info.member_id,
        };
        tracing::info!(index, revision, bytes = data.len(), "streaming a backup");
        let chunks = crate::backup::Chunks::new(&origin, data, SNAPSHOT_CHUNK_BYTES);
        let total = chunks.total_bytes();
        let mut header = self.ctx.header(Some(r.header));
        let mut sent = 0u64;
        let messages = chunks.map(move |blob| {
            sent += blob.len() as u64;
            Ok(pb::SnapshotResponse { header: header.take(), remaining_bytes: total - sent, blob })
        });
        Ok(GrpcResponse::new(Box::pin(futures::stream::iter(messages))))
    }

    /// Hands leadership to another voter by Raft leadership transfer; only the leader takes it
    /// (etcdctl's `move-leader` finds the leader itself).
    async fn move_leader(
        &self,
        req: GrpcRequest<pb::MoveLeaderRequest>,
    ) -> Result<GrpcResponse<pb::MoveLeaderResponse>, Status> {
        let who = self.ctx.who(&req)?;
        let to = req.into_inner().target_id;
        let r = self.ctx.request(who, cairn_core::Request::MoveLeader { to }).await?;
        Ok(GrpcResponse::new(pb::MoveLeaderResponse { header: self.ctx.header(Some(r.header)) }))
    }
}

fn alarm_member(a: &cairn_core::alarm::Alarm) -> pb::AlarmMember {
    let alarm = match a.kind {
        cairn_core::alarm::AlarmKind::NoSpace => pb::AlarmType::Nospace,
        cairn_core::alarm::AlarmKind::Corrupt => pb::AlarmType::Corrupt,
    };
    pb::AlarmMember { member_id: a.member, alarm: alarm.into() }
}
