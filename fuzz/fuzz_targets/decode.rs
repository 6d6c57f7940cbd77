//! Log entries and snapshots come from disk and from peers: decoding arbitrary bytes must give
//! a value or an error, never a panic or a runaway allocation.
#![no_main]

use cairn_core::request::Proposal;
use cairn_core::state_machine::StateMachine;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Proposal::decode(data) {
        assert_eq!(Proposal::decode(&p.encode()).unwrap(), p, "re-encoding is stable");
    }
    if let Ok(sm) = StateMachine::decode(data) {
        assert_eq!(StateMachine::decode(&sm.encode()).unwrap(), sm);
    }
});
