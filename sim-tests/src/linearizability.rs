//! Linearizability checker for the key-value register workload.
//!
//! Simulated clients record every request they make as an [`Op`]: who sent it, when it was
//! invoked and when its answer arrived (simulated nanoseconds), what it asked and what came back.
//! [`check`] decides whether some total order of those ops (a *linearization*) both respects real
//! time (an op that completed before another was invoked comes first) and replays correctly
//! against a sequential model of the store (Herlihy & Wing, "Linearizability", 1990).
//!
//! # The model
//!
//! Each key is an independent register holding `Option<Bytes>`: absent, or a value. A get
//! returns it, a put sets it, a delete makes it absent and reports whether it was present, a
//! compare-and-swap succeeds iff the register equals `expected` (`None`: absent) and then sets
//! the new value. This is etcd's single-key `Range`, `Put`, `DeleteRange` and a one-compare
//! `Txn`, with revisions left out.
//!
//! # What the outcomes mean
//!
//! - [`Outcome::Ok`]: the op took effect exactly once, somewhere inside `[invoke, complete]`, and
//!   returned this output.
//! - [`Outcome::Failed`]: the op was refused before it could be proposed, so it had no effect.
//!   Failed ops are dropped before checking (a read of the value a failed put would have written
//!   is therefore a violation, unless something else wrote it).
//! - [`Outcome::Unknown`]: the client gave up (timeout, connection lost). The op may have taken
//!   effect at any instant after `invoke`, arbitrarily late, or never, and any output is
//!   accepted; `complete` is ignored. An unknown get has no effect and is dropped; an unknown
//!   write is kept as an *optional* op with no deadline (see below).
//!
//! # Time
//!
//! Two ops are ordered in real time only if one's `complete` is *strictly* before the other's
//! `invoke`. Equal timestamps count as concurrent: simulated time is coarse and a response and a
//! new request can be stamped with the same instant although their real order inside the
//! simulator is unknown to the recorder. Counting them as concurrent only ever allows more
//! linearizations, so it cannot produce a false violation. (In the event list below this is
//! "calls sort before returns at the same time".)
//!
//! A history that cannot have been recorded (an `Ok` op with `complete < invoke`, or an output
//! of the wrong kind for its input) is a bug in the recorder, not in the store: [`check`]
//! reports it as [`Verdict::Malformed`] instead of guessing.
//!
//! # The algorithm
//!
//! 1. **P-compositionality** (Horn & Kroening, "Faster linearizability checking via
//!    P-compositionality", 2015): every op touches exactly one key and keys are independent, so
//!    the history is linearizable iff every key's sub-history is. [`check`] partitions by key
//!    and checks each key on its own, in key order (so the verdict is deterministic).
//! 2. **Just-in-time linearization** (Wing & Gong 1993, Lowe's "Testing for linearizability"
//!    2017, as implemented in porcupine's `checkSingle`): the calls and returns of one key's ops
//!    are sorted by time into a doubly-linked list. A depth-first search repeatedly picks an op
//!    whose call comes before the first remaining return (it may be linearized now), applies it
//!    to the model, and if the model accepts the output *lifts* the op's call and return out of
//!    the list (dancing links: O(1), undone in O(1) on backtrack). Reaching a return means the
//!    op it belongs to was not linearized in time: backtrack.
//! 3. **Memoization**: a configuration is the set of linearized ops (a bitset) plus the model
//!    state (the register's value, interned to a `u32`). A configuration seen before has been
//!    fully explored and failed (each step linearizes one more op, so a depth-first search never
//!    meets its own ancestors), so it is pruned. The bitset hash is Zobrist-style, updated in
//!    O(1) per lift.
//! 4. **Reads first**: an op that leaves the state as it is whenever it is accepted (a get, a
//!    failed CAS, a delete that found nothing) and that the model accepts now is linearized now,
//!    with no alternative tried at that level. This loses nothing: in any valid continuation it
//!    can be moved to the front, since its invoke is before every remaining return and it
//!    changes nothing for the ops it jumps over. Without this, concurrent reads multiply the
//!    orders to explore for nothing (proving a stale read on a key with ten busy clients went
//!    from over 50 million steps to a fraction of a second).
//! 5. **Indistinguishable values**: the model only ever compares the register with the values
//!    gets return and CASes expect. All other values (most values written by a timed-out put,
//!    which nobody read) are interned as one state, `OPAQUE`: no op can tell them apart.
//! 6. **Unknown writes** have a call but no return, so they never force a backtrack and may stay
//!    unlinearized forever: the search succeeds as soon as every op with a known outcome is
//!    linearized. Left alone, every pending unknown write would be tried at every level, and
//!    every subset of them explored; these measures keep them cheap:
//!    - *Order*: unknown calls live in a list of their own. Each level tries its known-outcome
//!      candidates first, then the unknown ones invoked by the level's deadline (the first
//!      remaining return), so an unknown write is placed only when the known ops cannot go on
//!      without it, rather than greedily at its invoke time.
//!    - *Dominance*: with the same known ops linearized and the same state, linearizing *fewer*
//!      unknown ops can only leave more options (an unknown op is optional and has no
//!      deadline), so if configuration `(K, U, s)` failed, any `(K, U', s)` with `U' ⊇ U` fails
//!      too. The memo keeps, per `(K, s)`, the minimal unknown sets seen and prunes supersets.
//!    - *Interchangeable unknown ops*: unknown ops with the same transition (after interning),
//!      once both invoked, can swap places in any linearization; so they are used in invoke
//!      order, one only after the previous one is linearized.
//!    - *Blind writes*: an unknown put or delete directly followed by another put or delete
//!      is useless: dropping it gives the same state, and it is optional. So right after an
//!      unknown blind write, puts and unknown deletes are not tried (the flag "last op was an
//!      unknown blind write" is part of the memoized state, so the memo stays exact). An
//!      unknown op that would not change the state is not tried either.
//!    - *Lookahead*: by the rule above, an unknown blind write must be followed by an op that
//!      reads the state: a known get, delete or CAS among this level's candidates, or an
//!      unknown CAS. It is tried only if one of those accepts the value it writes.
//!
//! Each of these only removes orders that cannot succeed unless an order kept can: a history
//! is reported linearizable iff it is. The brute-force oracle in `tests/linearizability.rs`
//! checks the checker against trying every order of small histories.
//!
//! # Cost
//!
//! Per key with `n` ops and `c` concurrent writes (ops overlapping any instant, reads aside),
//! a linearizable history is usually found in O(n * c) steps, and a violation needs every
//! reachable configuration explored: O(n * 2^c * v) in the worst case (`v` distinct observed
//! values), plus the unknown writes that stay pending. The problem is NP-complete (Gibbons &
//! Korach 1997), so [`Budget`] bounds the steps and the memo's memory per key; when it runs out
//! the verdict is [`Verdict::Unknown`], never a guess. `examples/lin_cost.rs` measures
//! realistic histories: 100,000 ops over 100 keys with 10 clients check in well under a second.
//!
//! ```
//! use bytes::Bytes;
//! use cairn_sim_tests::linearizability::{check, Budget, Input, Op, Outcome, Output, Verdict};
//!
//! let k = Bytes::from_static(b"k");
//! let history = vec![
//!     // Client 1 writes "1" between t=0 and t=10.
//!     Op {
//!         client: 1,
//!         invoke: 0,
//!         complete: 10,
//!         input: Input::Put { key: k.clone(), value: Bytes::from_static(b"1") },
//!         outcome: Outcome::Ok(Output::Put),
//!     },
//!     // Client 2 then reads the key as absent: a stale read.
//!     Op {
//!         client: 2,
//!         invoke: 20,
//!         complete: 30,
//!         input: Input::Get { key: k.clone() },
//!         outcome: Outcome::Ok(Output::Get(None)),
//!     },
//! ];
//! match check(&history, Budget::default()) {
//!     Verdict::Violation(v) => {
//!         assert_eq!(v.key, k);
//!         println!("{v}"); // The longest linearizable prefix and why nothing fits next.
//!     }
//!     other => panic!("expected a violation, got {other}"),
//! }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use bytes::Bytes;

/// Simulated time, in nanoseconds.
pub type Time = u64;

/// What a client asked for. Every input touches exactly one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Read the key.
    Get { key: Bytes },
    /// Set the key to `value`.
    Put { key: Bytes, value: Bytes },
    /// Make the key absent.
    Delete { key: Bytes },
    /// Set the key to `value` iff it currently equals `expected` (`None`: the key must be absent).
    Cas { key: Bytes, expected: Option<Bytes>, value: Bytes },
}

impl Input {
    /// The one key this input touches.
    pub fn key(&self) -> &Bytes {
        match self {
            Input::Get { key } | Input::Put { key, .. } | Input::Delete { key } | Input::Cas { key, .. } => {
                key
            }
        }
    }
}

/// What the store answered to a request that took effect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// The value read, `None` if the key was absent.
    Get(Option<Bytes>),
    /// The put took effect.
    Put,
    /// `deleted`: the key was present (and now is not).
    Delete { deleted: bool },
    /// `succeeded`: the comparison held and the new value was written.
    Cas { succeeded: bool },
}

/// How a request ended, from the client's point of view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Took effect once within `[invoke, complete]` and returned this output.
    Ok(Output),
    /// The request definitely did not take effect (refused before it could be proposed).
    Failed,
    /// Timed out / connection lost: may have taken effect at any point after invoke, or never.
    Unknown,
}

/// One request of one client, as recorded by the simulated client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// The client that sent it; only used to make reports readable.
    pub client: u64,
    /// When the client sent the request.
    pub invoke: Time,
    /// When the client received the answer. Ignored (treated as +infinity) for
    /// [`Outcome::Unknown`], and ignored for [`Outcome::Failed`].
    pub complete: Time,
    pub input: Input,
    pub outcome: Outcome,
}

/// Bounds on the work [`check`] does for each key. Exceeding either bound is reported as
/// [`Verdict::Unknown`]; it never turns into a "linearizable".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Search steps per key (one step: consider one candidate op, or backtrack). At the bound
    /// the key's verdict is [`Verdict::Unknown`].
    pub steps_per_key_max: u64,
    /// Approximate memory of the memo of explored configurations per key. At the bound the
    /// search stops memoizing new configurations: it stays correct but may run into
    /// `steps_per_key_max`.
    pub memo_bytes_per_key_max: usize,
}

impl Default for Budget {
    /// Enough for the histories a simulation run records (up to a few thousand ops per key with
    /// up to ten clients) with room to spare; at most a few seconds and 256 MiB per key.
    fn default() -> Self {
        Budget { steps_per_key_max: 50_000_000, memo_bytes_per_key_max: 256 << 20 }
    }
}

/// The result of [`check`].
// One verdict per check: not worth boxing the violation for.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every key's sub-history has a linearization.
    Linearizable,
    /// Some key's sub-history has none. When several keys do, the first key in byte order.
    Violation(Violation),
    /// The [`Budget`] ran out on `key` before the search could decide (and no other key has a
    /// violation). Nothing is known about `key`'s sub-history.
    Unknown { key: Bytes, reason: String },
    /// `history[index]` cannot have been recorded by a correct client: a recorder bug.
    Malformed { index: usize, reason: String },
}

impl Verdict {
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }
}

/// Why a key's sub-history is not linearizable, as porcupine reports it: the longest prefix the
/// search managed to linearize, and why no op can be linearized after it. Its `Display` is the
/// report a researcher replaying the seed reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The key whose sub-history is not linearizable.
    pub key: Bytes,
    /// How many of the key's ops were checked (failed ops and unknown gets are dropped).
    pub ops_checked: usize,
    /// The longest linearizable prefix found (the one with the most known-outcome ops), in
    /// linearization order, as `(index into the history, op)`. Not unique: another order of
    /// concurrent ops may get as far.
    pub prefix: Vec<(usize, Op)>,
    /// The key's value after `prefix`.
    pub state: Option<Bytes>,
    /// The known-outcome op not in `prefix` that completes first: whatever is linearized next
    /// must have been invoked no later than this op completed.
    pub deadline: Option<(usize, Op)>,
    /// Every op that could be linearized next (invoked no later than `deadline` completed) and
    /// why it cannot. Unknown-outcome ops are listed only if they could take effect here.
    pub next: Vec<Rejected>,
}

/// An op that could come next after [`Violation::prefix`] in real time, but does not fit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// Index into the checked history.
    pub index: usize,
    pub op: Op,
    /// Why: the model refuses its output, or it fits but no linearization continues after it.
    pub reason: String,
}

/// Checks `history` for linearizability against the per-key register model.
///
/// Ops may be in any order. [`Outcome::Failed`] ops and unknown gets are dropped; see the
/// module documentation for the semantics of times and outcomes. Never panics. Checks keys in
/// byte order and stops at the first violation; a key whose budget runs out is reported as
/// [`Verdict::Unknown`] only if no other key has a violation.
pub fn check(history: &[Op], budget: Budget) -> Verdict {
    if let Some((index, reason)) = find_malformed(history) {
        return Verdict::Malformed { index, reason };
    }
    let mut keys: BTreeMap<&Bytes, Vec<usize>> = BTreeMap::new();
    for (index, op) in history.iter().enumerate() {
        let dropped =
            matches!((&op.outcome, &op.input), (Outcome::Failed, _) | (Outcome::Unknown, Input::Get { .. }));
        if !dropped {
            keys.entry(op.input.key()).or_default().push(index);
        }
    }
    let mut undecided = None;
    for (key, indices) in keys {
        let key_history = KeyHistory::new(key.clone(), history, &indices);
        match key_history.search(budget) {
            Search::Linearizable => {}
            Search::Violation { prefix } => return Verdict::Violation(key_history.explain(history, &prefix)),
            Search::Exhausted { reason } => {
                if undecided.is_none() {
                    undecided = Some(Verdict::Unknown { key: key.clone(), reason });
                }
            }
        }
    }
    undecided.unwrap_or(Verdict::Linearizable)
}

fn find_malformed(history: &[Op]) -> Option<(usize, String)> {
    history.iter().enumerate().find_map(|(index, op)| {
        let Outcome::Ok(output) = &op.outcome else { return None };
        let kinds_match = matches!(
            (&op.input, output),
            (Input::Get { .. }, Output::Get(_))
                | (Input::Put { .. }, Output::Put)
                | (Input::Delete { .. }, Output::Delete { .. })
                | (Input::Cas { .. }, Output::Cas { .. })
        );
        if !kinds_match {
            Some((index, format!("output {output:?} does not answer input {:?}", op.input)))
        } else if op.complete < op.invoke {
            Some((index, format!("completed at {} before it was invoked at {}", op.complete, op.invoke)))
        } else {
            None
        }
    })
}

/// Register state id: `ABSENT`, `OPAQUE`, or `i + 2` for `KeyHistory::values[i]`.
type State = u32;
const ABSENT: State = 0;
/// Any value that no op observes (module docs, "Indistinguishable values").
const OPAQUE: State = 1;

/// An op's effect on the register, with its output folded in (values interned).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Transition {
    /// A get that returned `value`.
    Read { value: State },
    /// A put, or an unknown-outcome put (`value`) or delete (`ABSENT`): always applies.
    Write { value: State },
    /// A delete that reported `deleted`.
    Delete { deleted: bool },
    /// A compare-and-swap that reported `succeeded`. An unknown-outcome one is modelled as
    /// `succeeded: true`: its failing branch has no effect, the same as never linearizing it.
    Cas { expected: State, value: State, succeeded: bool },
}

impl Transition {
    /// Whether the op leaves the state as it is whenever the model accepts it: a get, a failed
    /// CAS, a delete that found nothing, a CAS to the value it expected. (A put of the current
    /// value does not count: elsewhere in the order it would change the state.)
    fn is_read_only(self) -> bool {
        match self {
            Transition::Read { .. } | Transition::Delete { deleted: false } => true,
            Transition::Cas { expected, value, succeeded } => !succeeded || expected == value,
            Transition::Write { .. } | Transition::Delete { deleted: true } => false,
        }
    }

    /// The state after applying this op to `state`, or `None` if the op's output is impossible
    /// in `state`.
    fn apply(self, state: State) -> Option<State> {
        match self {
            Transition::Read { value } => (state == value).then_some(state),
            Transition::Write { value } => Some(value),
            Transition::Delete { deleted } => ((state != ABSENT) == deleted).then_some(ABSENT),
            Transition::Cas { expected, value, succeeded } => match (state == expected, succeeded) {
                (true, true) => Some(value),
                (false, false) => Some(state),
                _ => None,
            },
        }
    }
}

struct KeyOp {
    /// Index into the full history.
    index: usize,
    invoke: Time,
    /// `None` for an unknown-outcome op: no deadline.
    complete: Option<Time>,
    transition: Transition,
}

/// One key's sub-history, ready to search. Ops with a known outcome come first (local ids
/// `0..known`), unknown-outcome writes after them.
struct KeyHistory {
    key: Bytes,
    ops: Vec<KeyOp>,
    known: usize,
    /// The observed values: state `i + 2` is `values[i]`.
    values: Vec<Bytes>,
}

enum Search {
    Linearizable,
    /// `prefix`: local op ids of the longest linearizable prefix found.
    Violation {
        prefix: Vec<usize>,
    },
    Exhausted {
        reason: String,
    },
}

const NIL: usize = usize::MAX;
/// The sentinel at the head of the event list.
const HEAD: usize = 0;

/// A call or return in an event list.
struct Entry {
    /// Local op id (`NIL` for `HEAD`).
    op: usize,
    time: Time,
    is_call: bool,
    /// For a call, its op's return entry (`NIL` for an unknown-outcome op, which has none).
    ret: usize,
    prev: usize,
    next: usize,
}

/// A doubly-linked list of calls and returns, sorted by time, with a sentinel at `HEAD`.
struct EventList {
    entries: Vec<Entry>,
}

impl EventList {
    /// `events` are `(time, is_return, op)`. Sorted by time; at equal times calls before
    /// returns (equal times are concurrent), then by op id so the order is deterministic.
    fn new(mut events: Vec<(Time, bool, usize)>, ops_len: usize) -> EventList {
        events.sort_unstable();
        let mut entries = Vec::with_capacity(events.len() + 1);
        entries.push(Entry { op: NIL, time: 0, is_call: false, ret: NIL, prev: NIL, next: NIL });
        let mut ret_of = vec![NIL; ops_len];
        for (position, &(time, is_return, op)) in events.iter().enumerate() {
            let at = position + 1;
            entries[at - 1].next = at;
            entries.push(Entry { op, time, is_call: !is_return, ret: NIL, prev: at - 1, next: NIL });
            if is_return {
                ret_of[op] = at;
            }
        }
        for entry in entries.iter_mut().skip(1) {
            if entry.is_call {
                entry.ret = ret_of[entry.op];
            }
        }
        EventList { entries }
    }

    fn first(&self) -> usize {
        self.entries[HEAD].next
    }

    /// Unlinks a call and its return. Must be undone by `unlift` in LIFO order.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        let ret = self.entries[call].ret;
        if ret != NIL {
            self.unlink(ret);
        }
    }

    fn unlift(&mut self, call: usize) {
        let ret = self.entries[call].ret;
        if ret != NIL {
            self.relink(ret);
        }
        self.relink(call);
    }

    fn unlink(&mut self, at: usize) {
        let (prev, next) = (self.entries[at].prev, self.entries[at].next);
        self.entries[prev].next = next;
        if next != NIL {
            self.entries[next].prev = prev;
        }
    }

    /// Relinks an entry between the neighbours it had when it was unlinked.
    fn relink(&mut self, at: usize) {
        let (prev, next) = (self.entries[at].prev, self.entries[at].next);
        self.entries[prev].next = at;
        if next != NIL {
            self.entries[next].prev = at;
        }
    }
}

/// The time of the first remaining return: every candidate of the level must have been invoked
/// by then. `Time::MAX` if no return remains (every known-outcome op is linearized).
fn first_return_time(known_list: &EventList) -> Time {
    let mut at = known_list.first();
    while at != NIL && known_list.entries[at].is_call {
        at = known_list.entries[at].next;
    }
    if at == NIL {
        Time::MAX
    } else {
        known_list.entries[at].time
    }
}

struct Bitset(Vec<u64>);

impl Bitset {
    fn new(len: usize) -> Bitset {
        Bitset(vec![0; len.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
    fn get(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
}

fn is_subset(small: &[u64], big: &[u64]) -> bool {
    small.iter().zip(big).all(|(s, b)| s & !b == 0)
}

/// splitmix64: a fixed, well-mixed hash of a `u64`, for Zobrist keys.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The memo keys are already Zobrist hashes: hash them no further.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = x;
    }
}

struct MemoEntry {
    /// The register state and the "after an unknown blind write" flag: `state << 1 | flag`.
    state: u64,
    known: Box<[u64]>,
    /// The minimal sets of linearized unknown-outcome ops explored with this `(known, state)`:
    /// an antichain, since a superset of a failed set fails too.
    unknown: Vec<Box<[u64]>>,
}

/// The configurations explored so far, all of which failed (a DFS never revisits one of its
/// ancestors: each step linearizes one more op).
struct Memo {
    buckets: HashMap<u64, Vec<MemoEntry>, BuildHasherDefault<IdentityHasher>>,
    bytes: usize,
    bytes_max: usize,
}

impl Memo {
    /// Returns whether the configuration is new (not dominated by one already explored), and
    /// records it if there is room.
    fn visit(&mut self, hash: u64, state: u64, known: &[u64], unknown: &[u64]) -> bool {
        let room = self.bytes < self.bytes_max;
        let unknown_bytes = 16 + 8 * unknown.len();
        if let Some(bucket) = self.buckets.get_mut(&hash) {
            if let Some(entry) = bucket.iter_mut().find(|e| e.state == state && *e.known == *known) {
                if entry.unknown.iter().any(|seen| is_subset(seen, unknown)) {
                    return false;
                }
                if room {
                    entry.unknown.retain(|seen| !is_subset(unknown, seen));
                    entry.unknown.push(unknown.into());
                    self.bytes += unknown_bytes;
                }
                return true;
            }
        }
        if room {
            let entry = MemoEntry { state, known: known.into(), unknown: vec![unknown.into()] };
            self.buckets.entry(hash).or_default().push(entry);
            self.bytes += 64 + 8 * known.len() + unknown_bytes;
        }
        true
    }
}

impl KeyHistory {
    fn new(key: Bytes, history: &[Op], indices: &[usize]) -> KeyHistory {
        // Only values some op compares the register with are told apart; all others are OPAQUE.
        let mut interned: HashMap<&Bytes, State> = HashMap::new();
        let mut values = Vec::new();
        for &index in indices {
            let op = &history[index];
            let observed = match (&op.input, &op.outcome) {
                (_, Outcome::Ok(Output::Get(value))) => value.as_ref(),
                (Input::Cas { expected, .. }, _) => expected.as_ref(),
                _ => None,
            };
            if let Some(value) = observed {
                interned.entry(value).or_insert_with(|| {
                    values.push(value.clone());
                    // At most 2^32 - 3 observed values per key: far beyond any budget.
                    State::try_from(values.len() + 1).unwrap_or(State::MAX)
                });
            }
        }
        let intern = |value: Option<&Bytes>| -> State {
            value.map_or(ABSENT, |value| interned.get(value).copied().unwrap_or(OPAQUE))
        };
        let mut known_ops = Vec::new();
        let mut unknown_ops = Vec::new();
        for &index in indices {
            let op = &history[index];
            let output = match &op.outcome {
                Outcome::Ok(output) => Some(output),
                _ => None,
            };
            let transition = match (&op.input, output) {
                (Input::Get { .. }, Some(Output::Get(value))) => {
                    Transition::Read { value: intern(value.as_ref()) }
                }
                (Input::Put { value, .. }, _) => Transition::Write { value: intern(Some(value)) },
                (Input::Delete { .. }, Some(Output::Delete { deleted })) => {
                    Transition::Delete { deleted: *deleted }
                }
                (Input::Delete { .. }, _) => Transition::Write { value: ABSENT },
                (Input::Cas { expected, value, .. }, output) => Transition::Cas {
                    expected: intern(expected.as_ref()),
                    value: intern(Some(value)),
                    succeeded: match output {
                        Some(Output::Cas { succeeded }) => *succeeded,
                        _ => true,
                    },
                },
                // Unknown gets are dropped by `check`; mismatched outputs by `find_malformed`.
                (Input::Get { .. }, _) => continue,
            };
            let complete = output.map(|_| op.complete);
            let key_op = KeyOp { index, invoke: op.invoke, complete, transition };
            if complete.is_some() {
                known_ops.push(key_op);
            } else {
                unknown_ops.push(key_op);
            }
        }
        let known = known_ops.len();
        known_ops.extend(unknown_ops);
        KeyHistory { key, ops: known_ops, known, values }
    }

    fn is_known(&self, op: usize) -> bool {
        op < self.known
    }

    /// The value of an observed state (`None` for `ABSENT` and `OPAQUE`).
    fn value(&self, state: State) -> Option<&Bytes> {
        (state as usize).checked_sub(2).and_then(|i| self.values.get(i))
    }

    /// Whether `op` is an unknown-outcome put or delete: optional, and blind to the state.
    fn is_unknown_blind_write(&self, op: usize) -> bool {
        !self.is_known(op) && matches!(self.ops[op].transition, Transition::Write { .. })
    }

    fn search(&self, budget: Budget) -> Search {
        if self.known == 0 {
            return Search::Linearizable;
        }
        Searcher::new(self, budget).run(budget)
    }

    /// Builds the porcupine-style report from the longest prefix the search found.
    fn explain(&self, history: &[Op], prefix: &[usize]) -> Violation {
        let mut done = vec![false; self.ops.len()];
        let mut state = ABSENT;
        // The same, with OPAQUE told apart again, for the report.
        let mut value: Option<Bytes> = None;
        for &op in prefix {
            done[op] = true;
            // The prefix was accepted by the search, so every step applies.
            state = self.ops[op].transition.apply(state).unwrap_or(state);
            value = match (&history[self.ops[op].index].input, self.ops[op].transition) {
                (Input::Put { value, .. }, _)
                | (Input::Cas { value, .. }, Transition::Cas { succeeded: true, .. }) => Some(value.clone()),
                (Input::Delete { .. }, _) => None,
                _ => value,
            };
        }
        let deadline = (0..self.known)
            .filter(|&op| !done[op])
            .min_by_key(|&op| (self.ops[op].complete, self.ops[op].invoke, op));
        let deadline_time = deadline.and_then(|op| self.ops[op].complete).unwrap_or(Time::MAX);
        let mut candidates: Vec<usize> =
            (0..self.ops.len()).filter(|&op| !done[op] && self.ops[op].invoke <= deadline_time).collect();
        candidates.sort_by_key(|&op| (self.ops[op].invoke, op));
        let next = candidates
            .into_iter()
            .filter_map(|op| {
                let reason = match self.ops[op].transition.apply(state) {
                    Some(_) if self.is_known(op) => {
                        "fits here, but no linearization of the remaining ops continues after it".to_string()
                    }
                    Some(_) => "outcome unknown; could take effect here, but no linearization of the \
                                remaining ops continues after it"
                        .to_string(),
                    None if self.is_known(op) => self.refusal(op, value.as_ref()),
                    None => return None,
                };
                let index = self.ops[op].index;
                Some(Rejected { index, op: history[index].clone(), reason })
            })
            .collect();
        let op_at = |op: usize| (self.ops[op].index, history[self.ops[op].index].clone());
        Violation {
            key: self.key.clone(),
            ops_checked: self.ops.len(),
            prefix: prefix.iter().map(|&op| op_at(op)).collect(),
            state: value,
            deadline: deadline.map(op_at),
            next,
        }
    }

    /// Why the model refuses known-outcome `op` when the key holds `value`.
    fn refusal(&self, op: usize, value: Option<&Bytes>) -> String {
        let show = |s: State| Shown(self.value(s));
        let now = Shown(value);
        match self.ops[op].transition {
            Transition::Read { value } => format!("read {} but the key is {now}", show(value)),
            Transition::Delete { deleted: true } => "reported a deletion but the key is absent".to_string(),
            Transition::Delete { deleted: false } => {
                format!("reported nothing to delete but the key is {now}")
            }
            Transition::Cas { expected, succeeded: true, .. } => {
                format!("succeeded, so the key was {}, but it is {now}", show(expected))
            }
            Transition::Cas { succeeded: false, .. } => {
                format!("failed, but the key is {now}, which is what it expected")
            }
            Transition::Write { .. } => "a write always fits".to_string(),
        }
    }
}

/// Where the search is within a level (one configuration).
#[derive(Clone, Copy)]
enum Cursor {
    /// Just arrived: look for a forced candidate (module docs, "Reads first").
    Start,
    /// Trying the known-outcome candidates, at this entry of `known_list`.
    Known(usize),
    /// Trying the unknown-outcome candidates, at this entry of `unknown_list`.
    Unknown(usize),
}

/// One linearized op on the search stack.
struct Frame {
    /// The lifted call, in `known_list` if `op` is known, else in `unknown_list`.
    call: usize,
    op: usize,
    state_before: State,
    /// Linearized by the "reads first" rule: the level had no alternative to try.
    forced: bool,
}

/// The depth-first just-in-time search of one key (module docs, "The algorithm").
///
/// Known-outcome ops live in `known_list` (calls and returns); unknown-outcome ops, which
/// have no return, in `unknown_list` (calls sorted by invoke). A level's candidates are the
/// known calls before the first remaining return (the level's *deadline*), tried first, then
/// the unknown calls invoked by the deadline.
struct Searcher<'a> {
    history: &'a KeyHistory,
    known_list: EventList,
    unknown_list: EventList,
    /// Zobrist keys of the known-outcome ops.
    zobrist: Vec<u64>,
    /// For an unknown-outcome op, the previous one (by invoke) with the same transition, or
    /// `NIL` (module docs, "Interchangeable unknown ops").
    same_before: Vec<usize>,
    known_bits: Bitset,
    unknown_bits: Bitset,
    /// XOR of `zobrist` over the linearized known-outcome ops.
    known_hash: u64,
    memo: Memo,
    stack: Vec<Frame>,
    state: State,
    /// Whether the last op linearized is an unknown blind write (module docs, "Blind writes").
    after_unknown_write: bool,
    known_done: usize,
    /// The longest prefix found (most known-outcome ops), as local op ids.
    best: Vec<usize>,
    best_known: usize,
    /// Set when a level's unknown pass starts: its deadline, and the transitions of the
    /// state-reading candidates an unknown blind write could feed (module docs, "Lookahead").
    deadline: Time,
    readers: Vec<Transition>,
}

impl<'a> Searcher<'a> {
    fn new(history: &'a KeyHistory, budget: Budget) -> Searcher<'a> {
        let (known, all) = (history.known, history.ops.len());
        let mut known_events = Vec::with_capacity(2 * known);
        let mut unknown_events = Vec::with_capacity(all - known);
        for (id, op) in history.ops.iter().enumerate() {
            match op.complete {
                Some(complete) => known_events.extend([(op.invoke, false, id), (complete, true, id)]),
                None => unknown_events.push((op.invoke, false, id)),
            }
        }
        let unknown_list = EventList::new(unknown_events, all);
        let mut same_before = vec![NIL; all];
        let mut last_of_class: HashMap<Transition, usize> = HashMap::new();
        let mut at = unknown_list.first();
        while at != NIL {
            let op = unknown_list.entries[at].op;
            if let Some(before) = last_of_class.insert(history.ops[op].transition, op) {
                same_before[op] = before;
            }
            at = unknown_list.entries[at].next;
        }
        Searcher {
            history,
            known_list: EventList::new(known_events, all),
            unknown_list,
            zobrist: (0..known as u64).map(mix).collect(),
            same_before,
            known_bits: Bitset::new(known),
            unknown_bits: Bitset::new(all - known),
            known_hash: 0,
            memo: Memo { buckets: HashMap::default(), bytes: 0, bytes_max: budget.memo_bytes_per_key_max },
            stack: Vec::new(),
            state: ABSENT,
            after_unknown_write: false,
            known_done: 0,
            best: Vec::new(),
            best_known: 0,
            deadline: Time::MAX,
            readers: Vec::new(),
        }
    }

    fn run(mut self, budget: Budget) -> Search {
        let mut cursor = Cursor::Start;
        let mut steps = 0u64;
        loop {
            if self.known_done == self.history.known {
                return Search::Linearizable;
            }
            steps += 1;
            if steps > budget.steps_per_key_max {
                return Search::Exhausted {
                    reason: format!(
                        "search budget of {} steps ran out ({} ops on this key, {} with an unknown \
                         outcome; longest linearizable prefix found: {} of {} known-outcome ops)",
                        budget.steps_per_key_max,
                        self.history.ops.len(),
                        self.history.ops.len() - self.history.known,
                        self.best_known,
                        self.history.known
                    ),
                };
            }
            let next = match cursor {
                Cursor::Start => match self.forced_candidate() {
                    Some((call, op, state_after)) => {
                        if self.advance(call, op, state_after, true) {
                            Some(Cursor::Start)
                        } else {
                            // Explored before and failed: so does this level, having no other choice.
                            self.backtrack()
                        }
                    }
                    None => Some(Cursor::Known(self.known_list.first())),
                },
                Cursor::Known(at) if at == NIL || !self.known_list.entries[at].is_call => {
                    self.deadline = first_return_time(&self.known_list);
                    self.collect_readers();
                    Some(Cursor::Unknown(self.unknown_list.first()))
                }
                Cursor::Known(call) => {
                    let op = self.known_list.entries[call].op;
                    match self.accepts(op) {
                        Some(state_after) if self.advance(call, op, state_after, false) => {
                            Some(Cursor::Start)
                        }
                        _ => Some(Cursor::Known(self.known_list.entries[call].next)),
                    }
                }
                Cursor::Unknown(at) if at == NIL || self.unknown_list.entries[at].time > self.deadline => {
                    self.backtrack()
                }
                Cursor::Unknown(call) => {
                    let op = self.unknown_list.entries[call].op;
                    match self.accepts(op) {
                        Some(state_after) if self.advance(call, op, state_after, false) => {
                            Some(Cursor::Start)
                        }
                        _ => Some(Cursor::Unknown(self.unknown_list.entries[call].next)),
                    }
                }
            };
            match next {
                Some(next) => cursor = next,
                None => return Search::Violation { prefix: self.best },
            }
        }
    }

    /// A read-only known-outcome candidate that the model accepts: linearizing it right away
    /// loses nothing (module docs, "Reads first").
    fn forced_candidate(&self) -> Option<(usize, usize, State)> {
        let mut at = self.known_list.first();
        while at != NIL && self.known_list.entries[at].is_call {
            let op = self.known_list.entries[at].op;
            let transition = self.history.ops[op].transition;
            if transition.is_read_only() && transition.apply(self.state).is_some() {
                return Some((at, op, self.state));
            }
            at = self.known_list.entries[at].next;
        }
        None
    }

    /// The state after linearizing candidate `op` next, or `None` if the model refuses it or a
    /// pruning rule says it is not worth trying (module docs, "Unknown writes").
    fn accepts(&self, op: usize) -> Option<State> {
        let transition = self.history.ops[op].transition;
        let blind = matches!(transition, Transition::Write { .. });
        if self.after_unknown_write && blind {
            return None;
        }
        let state_after = transition.apply(self.state)?;
        if self.history.is_known(op) {
            return Some(state_after);
        }
        let before = self.same_before[op];
        if before != NIL && !self.unknown_bits.get(before - self.history.known) {
            return None;
        }
        let useless = state_after == self.state
            || (blind && !self.readers.iter().any(|reader| reader.apply(state_after).is_some()));
        (!useless).then_some(state_after)
    }

    /// Linearizes `op` (its call is entry `call`) next, reaching `state_after`, unless the
    /// configuration that leads to was explored before. Returns whether it did.
    fn advance(&mut self, call: usize, op: usize, state_after: State, forced: bool) -> bool {
        let known = self.history.is_known(op);
        let unknown_blind_write = self.history.is_unknown_blind_write(op);
        let memo_state = u64::from(state_after) << 1 | u64::from(unknown_blind_write);
        // The top bit keeps state hashes apart from the ops' Zobrist keys, `mix(op)`.
        let state_hash = mix(memo_state | 1 << 63);
        let hash = if known {
            self.known_bits.set(op);
            self.known_hash ^ self.zobrist[op] ^ state_hash
        } else {
            self.unknown_bits.set(op - self.history.known);
            self.known_hash ^ state_hash
        };
        if !self.memo.visit(hash, memo_state, &self.known_bits.0, &self.unknown_bits.0) {
            if known {
                self.known_bits.clear(op);
            } else {
                self.unknown_bits.clear(op - self.history.known);
            }
            return false;
        }
        self.stack.push(Frame { call, op, state_before: self.state, forced });
        self.state = state_after;
        self.after_unknown_write = unknown_blind_write;
        if known {
            self.known_list.lift(call);
            self.known_hash ^= self.zobrist[op];
            self.known_done += 1;
            if self.known_done > self.best_known {
                self.best_known = self.known_done;
                self.best = self.stack.iter().map(|frame| frame.op).collect();
            }
        } else {
            self.unknown_list.lift(call);
        }
        true
    }

    /// Undoes linearized ops until one had a sibling left to try, and returns where to resume;
    /// `None` when the stack is empty: no linearization exists.
    fn backtrack(&mut self) -> Option<Cursor> {
        loop {
            let frame = self.stack.pop()?;
            let op = frame.op;
            self.state = frame.state_before;
            self.after_unknown_write =
                self.stack.last().is_some_and(|f| self.history.is_unknown_blind_write(f.op));
            let resume = if self.history.is_known(op) {
                self.known_list.unlift(frame.call);
                self.known_bits.clear(op);
                self.known_hash ^= self.zobrist[op];
                self.known_done -= 1;
                Cursor::Known(self.known_list.entries[frame.call].next)
            } else {
                self.unknown_list.unlift(frame.call);
                self.unknown_bits.clear(op - self.history.known);
                self.deadline = first_return_time(&self.known_list);
                self.collect_readers();
                Cursor::Unknown(self.unknown_list.entries[frame.call].next)
            };
            if !frame.forced {
                return Some(resume);
            }
        }
    }

    /// Fills `readers`: out of the candidates an unknown blind write at this level could be
    /// directly followed by, the transitions of those that read the state: the known calls
    /// before the first return that are not blind writes, and the unknown CASes invoked by the
    /// deadline.
    fn collect_readers(&mut self) {
        self.readers.clear();
        let (known_list, unknown_list) = (&self.known_list, &self.unknown_list);
        let mut at = known_list.first();
        while at != NIL && known_list.entries[at].is_call {
            let transition = self.history.ops[known_list.entries[at].op].transition;
            if !matches!(transition, Transition::Write { .. }) {
                self.readers.push(transition);
            }
            at = known_list.entries[at].next;
        }
        let mut at = unknown_list.first();
        while at != NIL && unknown_list.entries[at].time <= self.deadline {
            let transition = self.history.ops[unknown_list.entries[at].op].transition;
            if matches!(transition, Transition::Cas { .. }) {
                self.readers.push(transition);
            }
            at = unknown_list.entries[at].next;
        }
    }
}

/// Displays a register value: `absent`, or the bytes as `b"..."`.
struct Shown<'a>(Option<&'a Bytes>);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("absent"),
            Some(value) => write!(f, "{value:?}"),
        }
    }
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::Get { key } => write!(f, "get {key:?}"),
            Input::Put { key, value } => write!(f, "put {key:?} = {value:?}"),
            Input::Delete { key } => write!(f, "delete {key:?}"),
            Input::Cas { key, expected, value } => {
                write!(f, "cas {key:?} if {} then = {value:?}", Shown(expected.as_ref()))
            }
        }
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Output::Get(value) => write!(f, "{}", Shown(value.as_ref())),
            Output::Put => f.write_str("ok"),
            Output::Delete { deleted: true } => f.write_str("deleted"),
            Output::Delete { deleted: false } => f.write_str("nothing to delete"),
            Output::Cas { succeeded: true } => f.write_str("succeeded"),
            Output::Cas { succeeded: false } => f.write_str("compare failed"),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok(output) => write!(f, "{output}"),
            Outcome::Failed => f.write_str("refused (no effect)"),
            Outcome::Unknown => f.write_str("unknown (may take effect any time after invoke, or never)"),
        }
    }
}

impl fmt::Display for Op {
    /// `client 3 [100, 250] put b"k" = b"v" -> ok`; an unknown outcome shows `[100, ?]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.outcome {
            Outcome::Ok(_) => write!(f, "client {} [{}, {}] ", self.client, self.invoke, self.complete)?,
            _ => write!(f, "client {} [{}, ?] ", self.client, self.invoke)?,
        }
        write!(f, "{} -> {}", self.input, self.outcome)
    }
}

/// How many linearized ops a [`Violation`] report shows before the point where it got stuck.
const REPORT_PREFIX_OPS_MAX: usize = 20;
/// How many of the unknown-outcome ops that could come next a [`Violation`] report names.
const REPORT_UNKNOWN_OPS_MAX: usize = 10;

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "key {:?} is not linearizable ({} ops checked)", self.key, self.ops_checked)?;
        let shown = self.prefix.len().min(REPORT_PREFIX_OPS_MAX);
        write!(f, "longest linearizable prefix found: {} ops", self.prefix.len())?;
        if shown < self.prefix.len() {
            write!(f, " (the first {} not shown)", self.prefix.len() - shown)?;
        }
        writeln!(f)?;
        for (i, (index, op)) in self.prefix.iter().enumerate().skip(self.prefix.len() - shown) {
            writeln!(f, "  {:>4}. #{index} {op}", i + 1)?;
        }
        writeln!(f, "key after the prefix: {}", Shown(self.state.as_ref()))?;
        match &self.deadline {
            Some((index, op)) => writeln!(
                f,
                "the next op must have been invoked by t={} (when #{index} completed), but none fits:",
                op.complete
            )?,
            None => writeln!(f, "no op fits next:")?,
        }
        let (known, unknown): (Vec<&Rejected>, Vec<&Rejected>) =
            self.next.iter().partition(|rejected| matches!(rejected.op.outcome, Outcome::Ok(_)));
        for rejected in known {
            writeln!(f, "  #{} {}: {}", rejected.index, rejected.op, rejected.reason)?;
        }
        if !unknown.is_empty() {
            write!(
                f,
                "  and {} unknown-outcome writes could take effect here, but nothing continues after any \
                 of them:",
                unknown.len()
            )?;
            for rejected in unknown.iter().take(REPORT_UNKNOWN_OPS_MAX) {
                write!(f, " #{}", rejected.index)?;
            }
            if unknown.len() > REPORT_UNKNOWN_OPS_MAX {
                write!(f, " ...")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable => f.write_str("linearizable"),
            Verdict::Violation(violation) => write!(f, "{violation}"),
            Verdict::Unknown { key, reason } => write!(f, "undecided on key {key:?}: {reason}"),
            Verdict::Malformed { index, reason } => write!(f, "malformed history: op #{index} {reason}"),
        }
    }
}

/// The key-value register applied sequentially: what each operation returns when operations
/// run one at a time against `model`. For generating histories (tests, cost examples); the
/// checker has its own representation of the same rules.
pub fn sequential_apply(model: &mut std::collections::BTreeMap<Bytes, Bytes>, input: &Input) -> Output {
    match input {
        Input::Get { key } => Output::Get(model.get(key).cloned()),
        Input::Put { key, value } => {
            model.insert(key.clone(), value.clone());
            Output::Put
        }
        Input::Delete { key } => Output::Delete { deleted: model.remove(key).is_some() },
        Input::Cas { key, expected, value } => {
            let succeeded = model.get(key) == expected.as_ref();
            if succeeded {
                model.insert(key.clone(), value.clone());
            }
            Output::Cas { succeeded }
        }
    }
}
