//! The Watch service: one bidirectional stream per client carries any number of watches.
//!
//! Each stream is served by one task (a `Session`) that reads the client's requests and the
//! member's watch updates and writes responses in a single order, so a watch's `created`
//! response always comes before its events, as etcd guarantees (etcd 3.4's
//! `v3rpc/watch.go`). What the session does, in etcd's terms:
//!
//! - Watch ids are per stream. A create with `watch_id` 0 gets the lowest id from 0 upward
//!   not yet used on the stream (etcd's `mvcc.watchStream.Watch` with `AutoWatchID`); a
//!   create naming an id in use is refused (created and canceled, id -1, with etcd's reason).
//! - A create answers `created` with the watch's id, then the history the watch is owed
//!   (from `start_revision`), a page at a time as the client takes it, then live events. A start revision already compacted away
//!   answers `created`, then `canceled` with `compact_revision`, as etcd does.
//! - Events go out whole revisions at a time, a response holding as many revisions as fit
//!   in `--max-request-bytes`; a single revision larger than that is split into `fragment`
//!   responses if the watch asked for fragments (etcd's `sendFragments`), else sent whole.
//! - A progress request answers a response with no events and watch id -1 (etcd 3.4: "not
//!   associated with any watch", clients hand it to every watch of the stream), whose header
//!   revision R promises that no event at or below R is still to come on this stream.
//! - Watches created with `progress_notify` get an empty response every
//!   `PROGRESS_NOTIFY_INTERVAL` in which they were sent no events (etcd: every 10 minutes).
//! - The member drops a watcher that falls `WATCH_BUFFER_MAX` updates behind (its update
//!   stream ends). etcd never drops a slow watcher, it lets it catch up from history; the
//!   session does the same: it re-opens the watch on the member from the first revision it
//!   has not yet sent, under the same id, and the client sees nothing but a pause. Only if
//!   that revision has been compacted meanwhile is the watch canceled with
//!   `compact_revision` (etcd does the same for a slow watcher overtaken by compaction).
//! - When the member has stopped, the stream ends with UNAVAILABLE, and clients re-watch on
//!   another member from where they were.
//! - When the client goes away, every watch of the stream is canceled on the member. A client
//!   that only half-closes its side keeps its watches, as with etcd.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use cairn_core::kv::Event;
use cairn_core::{Error, Header, WatchId, WatchPage, WatchRequest, WatchUpdate};
use cairn_io_tokio::WatchStream;
use futures::{Stream, StreamExt};
use prost::Message;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::time::MissedTickBehavior;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status, Streaming};

use super::convert;
use super::error::status;
use super::pb::etcdserverpb as pb;
use super::pb::mvccpb;
use super::Ctx;

use pb::watch_create_request::FilterType;
use pb::watch_request::RequestUnion;

/// How often watches created with `progress_notify` hear from an idle stream. etcd uses 10
/// minutes; Cairn is more talkative so that clients learn of progress while a key is quiet.
pub const PROGRESS_NOTIFY_INTERVAL: Duration = Duration::from_secs(10);

/// The watch id of an answer to a progress request: it belongs to no single watch.
pub const PROGRESS_WATCH_ID: i64 = -1;

/// The watch id of a refused create (etcd's mvcc answers -1 with the error).
pub const REFUSED_WATCH_ID: i64 = -1;

/// etcd's cancel reasons (its `mvcc` error strings), which clients show to users.
pub const REASON_EMPTY_RANGE: &str = "mvcc: watcher range is empty";
pub const REASON_DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";

/// Responses queued for a slow client. At the bound the session waits, and stops reading the
/// member's updates meanwhile; a watcher the member then drops is re-opened from history.
const OUTBOUND_QUEUED_MAX: usize = 64;

/// Bytes of responses queued for a slow client, per stream (a response larger than this goes
/// alone). A response holds up to `--max-request-bytes` of events, so the count alone let a
/// client that stops reading hold 64 of them, ~96 MiB, per stream: 20 such streams watching a
/// 100 MB history from revision 1 took a member from 404 MB to 2.3 GB.
const OUTBOUND_QUEUED_BYTES: usize = 4 << 20;

/// A response on its way to the client, with its share of `OUTBOUND_QUEUED_BYTES` (given back
/// when tonic takes it to encode).
type Queued = (Result<pb::WatchResponse, Status>, Option<tokio::sync::OwnedSemaphorePermit>);

/// Requests read from a client's watch stream and not yet handled, per stream (a create is
/// about a hundred bytes here). At the bound the stream is read no further until the session
/// catches up; HTTP/2 flow control then holds the client back.
const WATCH_REQUESTS_QUEUED_MAX: usize = 65_536;

pub(crate) struct WatchService {
    ctx: Ctx,
    progress_interval: Duration,
}

impl WatchService {
    pub(crate) fn new(ctx: Ctx, progress_interval: Duration) -> WatchService {
        WatchService { ctx, progress_interval }
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::watch_server::Watch for WatchService {
    type WatchStream = ResponseStream;

    async fn watch(
        &self,
        req: GrpcRequest<Streaming<pb::WatchRequest>>,
    ) -> Result<GrpcResponse<Self::WatchStream>, Status> {
        let who = self.ctx.who(&req)?;
        let (out, rx) = mpsc::channel::<Queued>(OUTBOUND_QUEUED_MAX);
        let session = Session {
            who,
            max_response_bytes: self.ctx.info.max_request_bytes,
            ctx: self.ctx.clone(),
            out,
            out_bytes: std::sync::Arc::new(tokio::sync::Semaphore::new(OUTBOUND_QUEUED_BYTES)),
            watches: BTreeMap::new(),
            next_auto_id: 0,
            poll_cursor: -1,
        };
        tokio::spawn(session.run(req.into_inner(), self.progress_interval));
        Ok(GrpcResponse::new(Box::pin(ReceiverStream::new(rx).map(|(response, _bytes)| response))))
    }
}

/// Why a session ends.
enum Stop {
    /// The client is gone (or its stream broke): nobody to tell.
    ClientGone,
    /// The stream ends with this status.
    Failed(Status),
}

/// One client stream and its watches.
struct Session {
    ctx: Ctx,
    /// Who opened the stream: each watch is checked against their permissions when it opens.
    who: Option<cairn_core::auth::AuthInfo>,
    out: mpsc::Sender<Queued>,
    /// What is left of `OUTBOUND_QUEUED_BYTES`.
    out_bytes: std::sync::Arc<tokio::sync::Semaphore>,
    /// By client-visible watch id.
    watches: BTreeMap<i64, Active>,
    /// Where the search for a free id starts (etcd's `nextID`).
    next_auto_id: i64,
    /// The watch whose update was taken last; polling resumes after it, so one busy watch
    /// cannot starve the others.
    poll_cursor: i64,
    /// A response's events stop at this size where a revision boundary allows.
    max_response_bytes: usize,
}

/// One open watch.
struct Active {
    /// The member's id for it (changes when it is re-opened).
    node_id: WatchId,
    /// What was asked of the member; `start_revision` is pinned to a concrete revision.
    req: WatchRequest,
    updates: WatchStream,
    /// The first revision not yet sent to the client.
    next_revision: i64,
    progress_notify: bool,
    fragment: bool,
    /// Events were sent since the last progress tick (the next notification is skipped).
    sent_since_tick: bool,
}

impl Session {
    async fn run(mut self, mut inbound: Streaming<pb::WatchRequest>, progress_interval: Duration) {
        // The client's requests are read as they arrive, not as the session gets to them: a
        // client may send thousands of creates without waiting for each reply (etcd's clients
        // multiplex watches), and requests left unread in HTTP/2's buffers count against its
        // budget for small DATA frames, which closes the whole connection when spent.
        let (requests, mut queued) = mpsc::channel(WATCH_REQUESTS_QUEUED_MAX);
        let reader = tokio::spawn(async move {
            while let Some(req) = inbound.next().await {
                if requests.send(req).await.is_err() {
                    return;
                }
            }
        });
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + progress_interval, progress_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut inbound_open = true;
        let stop = loop {
            let step = tokio::select! {
                _ = self.out.closed() => Err(Stop::ClientGone),
                req = queued.recv(), if inbound_open => match req {
                    Some(Ok(req)) => self.on_request(req).await,
                    Some(Err(status)) => Err(Stop::Failed(status)),
                    None => {
                        inbound_open = false;
                        Ok(())
                    }
                },
                (id, update) = std::future::poll_fn(|cx| {
                    poll_updates(&mut self.watches, &mut self.poll_cursor, cx)
                }) => self.on_update(id, update).await,
                _ = ticker.tick() => self.on_tick().await,
            };
            if let Err(stop) = step {
                break stop;
            }
        };
        reader.abort();
        if let Stop::Failed(status) = stop {
            let _ = self.out.send((Err(status), None)).await;
        }
        for w in std::mem::take(&mut self.watches).into_values() {
            self.ctx.node.cancel_watch(w.node_id).await;
        }
    }

    async fn on_request(&mut self, req: pb::WatchRequest) -> Result<(), Stop> {
        match req.request_union {
            Some(RequestUnion::CreateRequest(c)) => self.create(c).await,
            Some(RequestUnion::CancelRequest(c)) => self.cancel(c.watch_id).await,
            Some(RequestUnion::ProgressRequest(_)) => self.progress().await,
            // etcd ignores a request with nothing set rather than end the stream.
            None => Ok(()),
        }
    }

    async fn create(&mut self, c: pb::WatchCreateRequest) -> Result<(), Stop> {
        let current = self.ctx.node.with_status(|st| st.revision);
        let header = self.header(current);
        let Some(req) = watch_request_from_pb(&c, current) else {
            return self.send(refused(header, REASON_EMPTY_RANGE)).await;
        };
        let id = match c.watch_id {
            0 => self.auto_id(),
            id if self.watches.contains_key(&id) => {
                return self.send(refused(header, REASON_DUPLICATE_ID)).await;
            }
            id => id,
        };
        match self.ctx.node.watch(self.who.clone(), req.clone()).await {
            Ok((node_id, page, updates)) => {
                // Recorded before anything is sent, so that the member's watch is canceled
                // however the session ends.
                self.watches.insert(
                    id,
                    Active {
                        node_id,
                        next_revision: req.start_revision,
                        req,
                        updates,
                        progress_notify: c.progress_notify,
                        fragment: c.fragment,
                        sent_since_tick: false,
                    },
                );
                self.send(created(header, id)).await?;
                self.forward_pages(id, page).await
            }
            Err(Error::Compacted { compacted_revision }) => {
                self.send(created(header, id)).await?;
                self.send(compacted(header, id, compacted_revision)).await
            }
            Err(e) if e.is_fatal() => Err(Stop::Failed(status(&e))),
            Err(e) => self.send(refused(header, &e.to_string())).await,
        }
    }

    /// etcd answers a cancel only for a watch that exists.
    async fn cancel(&mut self, id: i64) -> Result<(), Stop> {
        let Some(w) = self.watches.remove(&id) else { return Ok(()) };
        self.ctx.node.cancel_watch(w.node_id).await;
        let header = self.header(self.ctx.node.with_status(|st| st.revision));
        self.send(pb::WatchResponse { header, watch_id: id, canceled: true, ..Default::default() }).await
    }

    async fn progress(&mut self) -> Result<(), Stop> {
        let revision = self.settled_revision().await?;
        let header = self.header(revision);
        self.send(pb::WatchResponse { header, watch_id: PROGRESS_WATCH_ID, ..Default::default() }).await
    }

    async fn on_tick(&mut self) -> Result<(), Stop> {
        if !self.watches.values().any(|w| w.progress_notify) {
            return Ok(());
        }
        let revision = self.settled_revision().await?;
        let mut idle = Vec::new();
        for (&id, w) in self.watches.iter_mut().filter(|(_, w)| w.progress_notify) {
            if !w.sent_since_tick {
                idle.push(id);
            }
            w.sent_since_tick = false;
        }
        for id in idle {
            let header = self.header(revision);
            self.send(pb::WatchResponse { header, watch_id: id, ..Default::default() }).await?;
        }
        Ok(())
    }

    async fn on_update(&mut self, id: i64, update: Option<WatchUpdate>) -> Result<(), Stop> {
        match update {
            Some(WatchUpdate::Events(events)) => self.forward(id, events).await,
            Some(WatchUpdate::Compacted { compact_revision }) => {
                // The member has closed the watch already.
                self.watches.remove(&id);
                let header = self.header(self.ctx.node.with_status(|st| st.revision));
                self.send(compacted(header, id, compact_revision)).await
            }
            None => self.reopen(id).await,
        }
    }

    /// The member dropped the watch (it fell behind) or stopped: open it again from the first
    /// revision the client has not seen.
    async fn reopen(&mut self, id: i64) -> Result<(), Stop> {
        let Some(w) = self.watches.get(&id) else { return Ok(()) };
        let mut req = w.req.clone();
        req.start_revision = w.next_revision;
        tracing::debug!(
            watch_id = id,
            from_revision = req.start_revision,
            "re-opening a watch the member dropped"
        );
        // Checked when it first opened (etcd checks a watch once): credentials that went stale
        // since must not end it.
        match self.ctx.node.watch_as_member(req).await {
            Ok((node_id, page, updates)) => {
                if let Some(w) = self.watches.get_mut(&id) {
                    w.node_id = node_id;
                    w.updates = updates;
                }
                self.forward_pages(id, page).await
            }
            Err(Error::Compacted { compacted_revision }) => {
                self.watches.remove(&id);
                let header = self.header(self.ctx.node.with_status(|st| st.revision));
                self.send(compacted(header, id, compacted_revision)).await
            }
            Err(e) if e.is_fatal() => Err(Stop::Failed(status(&e))),
            Err(e) => {
                self.watches.remove(&id);
                let header = self.header(self.ctx.node.with_status(|st| st.revision));
                let reason = e.to_string();
                self.send(pb::WatchResponse {
                    header,
                    watch_id: id,
                    canceled: true,
                    cancel_reason: reason,
                    ..Default::default()
                })
                .await
            }
        }
    }

    /// Sends a watch's events and records how far the client has been brought.
    /// Sends the history a watch is owed, a page at a time: the next page is asked for only
    /// once this one is queued for the client, so a client that stops reading holds up one page
    /// (and the queue's `OUTBOUND_QUEUED_BYTES`), not the whole history.
    async fn forward_pages(&mut self, id: i64, mut page: WatchPage) -> Result<(), Stop> {
        loop {
            let more = page.more;
            self.forward(id, page.events).await?;
            if !more {
                return Ok(());
            }
            let Some(node_id) = self.watches.get(&id).map(|w| w.node_id) else { return Ok(()) };
            page = match self.ctx.node.watch_next_page(node_id).await {
                Ok(page) => page,
                Err(Error::Compacted { compacted_revision }) => {
                    self.watches.remove(&id);
                    let header = self.header(self.ctx.node.with_status(|st| st.revision));
                    return self.send(compacted(header, id, compacted_revision)).await;
                }
                Err(e) => return Err(Stop::Failed(status(&e))),
            };
        }
    }

    async fn forward(&mut self, id: i64, events: Vec<Event>) -> Result<(), Stop> {
        let Some(last_revision) = events.last().map(|e| e.kv.mod_revision) else { return Ok(()) };
        let Some(w) = self.watches.get_mut(&id) else { return Ok(()) };
        w.next_revision = w.next_revision.max(last_revision + 1);
        w.sent_since_tick = true;
        let fragment = w.fragment;
        let header = self.header(self.ctx.node.with_status(|st| st.revision).max(last_revision));
        for resp in event_responses(id, header, events, fragment, self.max_response_bytes) {
            self.send(resp).await?;
        }
        Ok(())
    }

    /// A revision R such that every event at or below R owed to this stream's watches has
    /// been sent: the member publishes its revision only after handing the updates up to it
    /// to the watchers, so reading R first and then sending everything already queued is
    /// enough.
    async fn settled_revision(&mut self) -> Result<i64, Stop> {
        let revision = self.ctx.node.with_status(|st| st.revision);
        let ids: Vec<i64> = self.watches.keys().copied().collect();
        for id in ids {
            while let Some(w) = self.watches.get_mut(&id) {
                match w.updates.try_recv() {
                    Ok(update) => self.on_update(id, Some(update)).await?,
                    Err(TryRecvError::Empty) => break,
                    // Re-opened (and caught up from history) or closed; either way, look again.
                    Err(TryRecvError::Disconnected) => self.on_update(id, None).await?,
                }
            }
        }
        Ok(revision)
    }

    /// The lowest id from `next_auto_id` up that no watch of the stream holds.
    fn auto_id(&mut self) -> i64 {
        while self.watches.contains_key(&self.next_auto_id) {
            self.next_auto_id = self.next_auto_id.wrapping_add(1);
        }
        let id = self.next_auto_id;
        self.next_auto_id = self.next_auto_id.wrapping_add(1);
        id
    }

    fn header(&self, revision: i64) -> Option<pb::ResponseHeader> {
        self.ctx.header(Some(Header { revision, raft_term: 0 }))
    }

    /// Queues `resp` for the client, waiting while the stream's queue is full (by count or by
    /// bytes).
    async fn send(&self, resp: pb::WatchResponse) -> Result<(), Stop> {
        let bytes = resp.encoded_len().min(OUTBOUND_QUEUED_BYTES) as u32;
        let permit = tokio::select! {
            permit = self.out_bytes.clone().acquire_many_owned(bytes) => permit.ok(),
            _ = self.out.closed() => return Err(Stop::ClientGone),
        };
        self.out.send((Ok(resp), permit)).await.map_err(|_| Stop::ClientGone)
    }
}

/// The next update of any watch, starting after the one served last.
fn poll_updates(
    watches: &mut BTreeMap<i64, Active>,
    cursor: &mut i64,
    cx: &mut Context<'_>,
) -> Poll<(i64, Option<WatchUpdate>)> {
    let start = *cursor;
    for (&id, w) in watches.range_mut((Bound::Excluded(start), Bound::Unbounded)) {
        if let Poll::Ready(update) = w.updates.poll_recv(cx) {
            *cursor = id;
            return Poll::Ready((id, update));
        }
    }
    for (&id, w) in watches.range_mut(..=start) {
        if let Poll::Ready(update) = w.updates.poll_recv(cx) {
            *cursor = id;
            return Poll::Ready((id, update));
        }
    }
    Poll::Pending
}

/// The member's watch request for a client's create, or `None` for an empty range (a
/// `range_end` at or below `key`), which etcd refuses. `current` is the member's revision: a
/// watch "from now" is pinned to start right after it, so it can be re-opened from history
/// without a gap.
pub fn watch_request_from_pb(c: &pb::WatchCreateRequest, current: i64) -> Option<WatchRequest> {
    // etcd watches "\0", the smallest key, when given none.
    let key = if c.key.is_empty() { Bytes::from_static(&[0]) } else { c.key.clone() };
    // "\0" means every key from `key` on; any other end must lie above `key`.
    if !c.range_end.is_empty() && c.range_end.as_ref() != [0] && key >= c.range_end {
        return None;
    }
    let mut req = WatchRequest {
        key,
        range_end: c.range_end.clone(),
        start_revision: if c.start_revision > 0 { c.start_revision } else { current + 1 },
        prev_kv: c.prev_kv,
        no_put: false,
        no_delete: false,
    };
    for f in &c.filters {
        match FilterType::try_from(*f) {
            Ok(FilterType::Noput) => req.no_put = true,
            Ok(FilterType::Nodelete) => req.no_delete = true,
            // etcd ignores filters it does not know.
            Err(_) => {}
        }
    }
    Some(req)
}

fn created(header: Option<pb::ResponseHeader>, id: i64) -> pb::WatchResponse {
    pb::WatchResponse { header, watch_id: id, created: true, ..Default::default() }
}

fn refused(header: Option<pb::ResponseHeader>, reason: &str) -> pb::WatchResponse {
    pb::WatchResponse {
        header,
        watch_id: REFUSED_WATCH_ID,
        created: true,
        canceled: true,
        cancel_reason: reason.to_string(),
        ..Default::default()
    }
}

fn compacted(header: Option<pb::ResponseHeader>, id: i64, compact_revision: i64) -> pb::WatchResponse {
    // etcd's cancel for compaction carries no revision in its header.
    let header = header.map(|h| pb::ResponseHeader { revision: 0, ..h });
    pb::WatchResponse { header, watch_id: id, canceled: true, compact_revision, ..Default::default() }
}

/// A watch's events as responses: whole revisions, as many per response as fit in
/// `max_bytes` (at least one revision each); a revision alone over `max_bytes` is split into
/// responses marked `fragment` (all but its last) when `fragment` is set, else sent whole.
pub fn event_responses(
    watch_id: i64,
    header: Option<pb::ResponseHeader>,
    events: Vec<Event>,
    fragment: bool,
    max_bytes: usize,
) -> Vec<pb::WatchResponse> {
    let respond = |events: Vec<mvccpb::Event>, fragment: bool| pb::WatchResponse {
        header,
        watch_id,
        fragment,
        events,
        ..Default::default()
    };
    let mut out = Vec::new();
    let mut batch: Vec<mvccpb::Event> = Vec::new();
    let mut batch_bytes = 0;
    for (group, group_bytes) in revision_groups(events) {
        if !batch.is_empty() && batch_bytes + group_bytes > max_bytes {
            out.push(respond(std::mem::take(&mut batch), false));
            batch_bytes = 0;
        }
        if fragment && group_bytes > max_bytes && group.len() > 1 {
            if !batch.is_empty() {
                out.push(respond(std::mem::take(&mut batch), false));
                batch_bytes = 0;
            }
            let mut pieces = split_by_size(group, max_bytes);
            let last = pieces.pop();
            out.extend(pieces.into_iter().map(|p| respond(p, true)));
            out.extend(last.map(|p| respond(p, false)));
        } else {
            batch.extend(group);
            batch_bytes += group_bytes;
        }
    }
    if !batch.is_empty() {
        out.push(respond(batch, false));
    }
    out
}

/// Encoded size of an event inside a response (field tag, length, body).
fn event_bytes(e: &mvccpb::Event) -> usize {
    let len = e.encoded_len();
    1 + prost::length_delimiter_len(len) + len
}

/// Events converted and grouped by revision, in order, with each group's encoded size.
fn revision_groups(events: Vec<Event>) -> Vec<(Vec<mvccpb::Event>, usize)> {
    let mut groups: Vec<(Vec<mvccpb::Event>, usize)> = Vec::new();
    let mut group_revision = None;
    for e in events {
        let revision = e.kv.mod_revision;
        let e = convert::event_to_pb(e);
        let bytes = event_bytes(&e);
        match groups.last_mut() {
            Some((group, size)) if group_revision == Some(revision) => {
                group.push(e);
                *size += bytes;
            }
            _ => {
                groups.push((vec![e], bytes));
                group_revision = Some(revision);
            }
        }
    }
    groups
}

/// Consecutive pieces of at most `max_bytes` each, at least one event per piece.
fn split_by_size(events: Vec<mvccpb::Event>, max_bytes: usize) -> Vec<Vec<mvccpb::Event>> {
    let mut pieces = Vec::new();
    let mut piece = Vec::new();
    let mut piece_bytes = 0;
    for e in events {
        let bytes = event_bytes(&e);
        if !piece.is_empty() && piece_bytes + bytes > max_bytes {
            pieces.push(std::mem::take(&mut piece));
            piece_bytes = 0;
        }
        piece.push(e);
        piece_bytes += bytes;
    }
    if !piece.is_empty() {
        pieces.push(piece);
    }
    pieces
}
