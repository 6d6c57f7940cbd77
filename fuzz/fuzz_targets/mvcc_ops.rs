//! Arbitrary sequences of writes, compactions and reads against the MVCC store: it must answer
//! each with a value or an error, and keep its invariants, whatever the sequence.
#![no_main]

use bytes::Bytes;
use cairn_core::kv::*;
use cairn_core::mvcc::Mvcc;
use libfuzzer_sys::fuzz_target;

fn key(b: u8) -> Bytes {
    Bytes::from(vec![b'a' + b % 6])
}

fuzz_target!(|data: &[u8]| {
    let mut store = Mvcc::new();
    let leases = |id: i64| id == 7;
    for op in data.chunks(4) {
        let [kind, a, b, c] = [op[0], *op.get(1).unwrap_or(&0), *op.get(2).unwrap_or(&0), *op.get(3).unwrap_or(&0)];
        match kind % 6 {
            0 => {
                let req = PutRequest { key: key(a), value: Bytes::from(vec![b]), lease: (c % 9) as i64, prev_kv: c & 1 == 1, ignore_value: c & 16 != 0, ignore_lease: c & 32 != 0 };
                let _ = store.put(&req, &leases);
            }
            1 => {
                let req = DeleteRangeRequest { key: key(a), range_end: if b % 2 == 0 { Bytes::new() } else { key(c) }, prev_kv: true };
                let _ = store.delete_range(&req);
            }
            2 => {
                let cmp = Compare { result: CompareResult::Equal, target: CompareTarget::Version(b as i64 % 3), key: key(a), range_end: Bytes::new() };
                let put = RequestOp::Put(PutRequest { key: key(c), value: Bytes::from_static(b"t"), ..Default::default() });
                let del = RequestOp::DeleteRange(DeleteRangeRequest { key: key(b), ..Default::default() });
                let req = TxnRequest { compare: vec![cmp], success: vec![put], failure: vec![del] };
                let _ = store.txn(&req, &leases);
            }
            3 => {
                let _ = store.compact(store.current_revision() - (a % 4) as i64);
            }
            _ => {
                let req = RangeRequest { key: key(a), range_end: key(b), revision: store.current_revision() - (c % 5) as i64, limit: (c % 3) as i64, ..Default::default() };
                let _ = store.range(&req);
                let _ = store.events(&key(a), &key(b), store.current_revision() - (c % 7) as i64);
            }
        }
        store.check_invariants().expect("store invariants");
    }
});
