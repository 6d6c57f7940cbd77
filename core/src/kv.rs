//! The key-value request and response types of Cairn's store, shaped after the etcd v3 API
//! (`etcdserverpb` / `mvccpb`) so the gRPC and JSON front ends map onto them field for field.
//!
//! These are plain data: no behaviour lives here. Integers are `i64` where etcd's wire format
//! uses `int64`, so conversions at the edges are lossless.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A key's state at one revision (etcd `mvccpb.KeyValue`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: Bytes,
    /// Main revision of the write that created the key (since its last deletion).
    pub create_revision: i64,
    /// Main revision of the last write to the key.
    pub mod_revision: i64,
    /// Number of writes since creation; 1 right after creation, reset by deletion.
    pub version: i64,
    pub value: Bytes,
    /// Lease the key is attached to, 0 for none.
    pub lease: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change at one revision (etcd `mvccpb.Event`).
///
/// For `Delete`, `kv` holds only `key` and `mod_revision` (the deletion's revision), as etcd's
/// tombstone does. `prev_kv` is always filled when the key existed before; a watch server strips
/// it for watchers that did not ask for it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    pub prev_kv: Option<KeyValue>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SortOrder {
    #[default]
    None,
    Ascend,
    Descend,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SortTarget {
    #[default]
    Key,
    Version,
    Create,
    Mod,
    Value,
}

/// etcd `RangeRequest`. `range_end` empty: the single key `key`; `range_end == [0]`: every key
/// `>= key`; otherwise the half-open interval `[key, range_end)`. `key == [0]` with
/// `range_end == [0]` is every key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RangeRequest {
    pub key: Bytes,
    pub range_end: Bytes,
    /// Maximum number of keys returned; 0 for no limit.
    pub limit: i64,
    /// Revision to read at; 0 (or less) for the current revision.
    pub revision: i64,
    pub sort_order: SortOrder,
    pub sort_target: SortTarget,
    /// Served from the local replica without a ReadIndex round.
    pub serializable: bool,
    pub keys_only: bool,
    pub count_only: bool,
    pub min_mod_revision: i64,
    pub max_mod_revision: i64,
    pub min_create_revision: i64,
    pub max_create_revision: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RangeResponse {
    pub kvs: Vec<KeyValue>,
    /// More keys matched than `limit` allowed.
    pub more: bool,
    /// Number of keys in the range at the read revision (before `limit`).
    pub count: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PutRequest {
    pub key: Bytes,
    pub value: Bytes,
    pub lease: i64,
    pub prev_kv: bool,
    /// Keep the current value; the key must exist and `value` must be empty.
    pub ignore_value: bool,
    /// Keep the current lease; the key must exist and `lease` must be 0.
    pub ignore_lease: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PutResponse {
    pub prev_kv: Option<KeyValue>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeleteRangeRequest {
    pub key: Bytes,
    pub range_end: Bytes,
    pub prev_kv: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeleteRangeResponse {
    pub deleted: i64,
    /// Filled only when the request asked for `prev_kv`.
    pub prev_kvs: Vec<KeyValue>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CompareResult {
    Equal,
    Greater,
    Less,
    NotEqual,
}

/// What a `Compare` looks at, with the operand it is compared against.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CompareTarget {
    Version(i64),
    Create(i64),
    Mod(i64),
    Value(Bytes),
    Lease(i64),
}

/// etcd `Compare`: holds when every key in `[key, range_end)` (or just `key`) satisfies
/// `<target of key> <result> <operand>`. A missing key compares as all-zero fields, except
/// for `Value`, which never holds on a missing key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Compare {
    pub result: CompareResult,
    pub target: CompareTarget,
    pub key: Bytes,
    pub range_end: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RequestOp {
    Range(RangeRequest),
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ResponseOp {
    Range(RangeResponse),
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TxnRequest {
    pub compare: Vec<Compare>,
    pub success: Vec<RequestOp>,
    pub failure: Vec<RequestOp>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TxnResponse {
    pub succeeded: bool,
    pub responses: Vec<ResponseOp>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CompactionRequest {
    pub revision: i64,
    /// Accepted for API compatibility; compaction in Cairn's store is always immediate.
    pub physical: bool,
}

impl RequestOp {
    /// True when the op (recursively, for a nested txn) can change the store.
    pub fn is_write(&self) -> bool {
        match self {
            RequestOp::Range(_) => false,
            RequestOp::Put(_) | RequestOp::DeleteRange(_) => true,
            RequestOp::Txn(t) => t.is_write(),
        }
    }
}

impl TxnRequest {
    /// True when some branch can write. A txn that cannot is served as a read (ReadIndex), as
    /// etcd serves read-only txns without going through the log.
    pub fn is_write(&self) -> bool {
        self.success.iter().chain(&self.failure).any(RequestOp::is_write)
    }
}
