//! The peer port reads whatever a connection sends: cut into arbitrary reads, the bytes must
//! give frames, hellos and messages or a clean refusal, never a panic, and the reader must
//! never hold more than it was given.
#![no_main]

use cairn_io_tokio::transport::{FrameReader, Hello, PeerFrame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, bytes)) = data.split_first() else { return };
    let step = usize::from(cut).max(1);
    let mut reader = FrameReader::default();
    let mut given = 0;
    for chunk in bytes.chunks(step) {
        reader.push(chunk);
        given += chunk.len();
        loop {
            match reader.next_frame() {
                Ok(Some(frame)) => {
                    if let Some(h) = Hello::decode(&frame) {
                        assert_eq!(Hello::decode(&h.encode()), Some(h));
                    }
                    let _ = PeerFrame::decode(&frame);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(reader.buffered_bytes() <= given);
    }
});
