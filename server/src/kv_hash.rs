//! The hash Hash, HashKV and `cairn snapshot status` report: of the key-value pairs live at a
//! revision. Deterministic and equal on members that hold the same data (what `etcdctl
//! endpoint hashkv` checks); not etcd's function (etcd hashes its bolt buckets), so values
//! differ from etcd's.

use cairn_core::kv::KeyValue;

/// FNV-1a (32-bit) over each pair's key, value, create and mod revisions, version and lease,
/// in key order, every field length- or width-delimited so different pairs cannot collide by
/// concatenation.
pub struct KvHash(u32);

impl KvHash {
    const OFFSET: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;

    pub fn new() -> KvHash {
        KvHash(Self::OFFSET)
    }

    fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.0 = (self.0 ^ u32::from(x)).wrapping_mul(Self::PRIME);
        }
    }

    fn int(&mut self, v: i64) {
        self.bytes(&v.to_le_bytes());
    }

    pub fn add(&mut self, kv: &KeyValue) {
        self.int(kv.key.len() as i64);
        self.bytes(&kv.key);
        self.int(kv.value.len() as i64);
        self.bytes(&kv.value);
        self.int(kv.create_revision);
        self.int(kv.mod_revision);
        self.int(kv.version);
        self.int(kv.lease);
    }

    pub fn finish(&self) -> u32 {
        self.0
    }
}
