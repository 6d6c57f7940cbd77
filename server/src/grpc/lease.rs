//! The Lease service: grant, revoke, keep-alive (a bidirectional stream), time-to-live and
//! the list of leases.
//!
//! Keep-alive and time-to-live need the leader (the core answers `NotLeader` elsewhere);
//! etcd forwards them from a follower to the leader, Cairn does not yet. On a follower a
//! keep-alive stream therefore ends with UNAVAILABLE "etcdserver: not leader" rather than
//! answer TTL 0: etcd clients read TTL 0 as "the lease has expired" and stop keeping it
//! alive for good, whereas on a stream error they reopen the stream after a short wait
//! (clientv3's `recvKeepAliveLoop`), on the next endpoint, so a client that knows several
//! members finds the leader by itself and the lease lives on.

use std::pin::Pin;

use cairn_core::{Error, Request, ResponseBody};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status, Streaming};

use super::error::{status, unexpected};
use super::pb::etcdserverpb as pb;
use super::Ctx;

/// Keep-alive responses queued for a slow client; at the bound, the stream stops reading
/// requests until the client catches up.
const KEEP_ALIVE_QUEUED_MAX: usize = 16;

pub(crate) struct LeaseService {
    ctx: Ctx,
}

impl LeaseService {
    pub(crate) fn new(ctx: Ctx) -> LeaseService {
        LeaseService { ctx }
    }
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<pb::LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::lease_server::Lease for LeaseService {
    async fn lease_grant(
        &self,
        req: GrpcRequest<pb::LeaseGrantRequest>,
    ) -> Result<GrpcResponse<pb::LeaseGrantResponse>, Status> {
        let who = self.ctx.who(&req)?;
        let req = req.into_inner();
        let resp = self.ctx.request(who, Request::LeaseGrant { id: req.id, ttl_secs: req.ttl }).await?;
        match resp.body {
            ResponseBody::LeaseGrant { id, ttl_secs } => Ok(GrpcResponse::new(pb::LeaseGrantResponse {
                header: self.ctx.header(Some(resp.header)),
                id,
                ttl: ttl_secs,
                error: String::new(),
            })),
            other => Err(unexpected("lease grant", &other)),
        }
    }

    async fn lease_revoke(
        &self,
        req: GrpcRequest<pb::LeaseRevokeRequest>,
    ) -> Result<GrpcResponse<pb::LeaseRevokeResponse>, Status> {
        let who = self.ctx.who(&req)?;
        let resp = self.ctx.request(who, Request::LeaseRevoke { id: req.into_inner().id }).await?;
        match resp.body {
            ResponseBody::LeaseRevoke => {
                Ok(GrpcResponse::new(pb::LeaseRevokeResponse { header: self.ctx.header(Some(resp.header)) }))
            }
            other => Err(unexpected("lease revoke", &other)),
        }
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        req: GrpcRequest<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<GrpcResponse<Self::LeaseKeepAliveStream>, Status> {
        // Open to every client, as etcd leaves it: a keep-alive stream outlives tokens and
        // auth changes, and its lease's keys were checked when they were put.
        let inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(KEEP_ALIVE_QUEUED_MAX);
        tokio::spawn(keep_alive(self.ctx.clone(), inbound, tx));
        Ok(GrpcResponse::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        req: GrpcRequest<pb::LeaseTimeToLiveRequest>,
    ) -> Result<GrpcResponse<pb::LeaseTimeToLiveResponse>, Status> {
        let who = self.ctx.who(&req)?;
        let req = req.into_inner();
        match self.ctx.node.request_as(who, Request::LeaseTimeToLive { id: req.id, keys: req.keys }).await {
            Ok(resp) => match resp.body {
                ResponseBody::LeaseTimeToLive { id, ttl_secs, granted_ttl_secs, keys } => {
                    Ok(GrpcResponse::new(pb::LeaseTimeToLiveResponse {
                        header: self.ctx.header(Some(resp.header)),
                        id,
                        ttl: ttl_secs,
                        granted_ttl: granted_ttl_secs,
                        keys,
                    }))
                }
                other => Err(unexpected("lease time-to-live", &other)),
            },
            // etcd answers an unknown lease with TTL -1 rather than an error.
            Err(Error::LeaseNotFound) => Ok(GrpcResponse::new(pb::LeaseTimeToLiveResponse {
                header: self.ctx.header(None),
                id: req.id,
                ttl: -1,
                granted_ttl: 0,
                keys: vec![],
            })),
            Err(e) => Err(status(&e)),
        }
    }

    async fn lease_leases(
        &self,
        req: GrpcRequest<pb::LeaseLeasesRequest>,
    ) -> Result<GrpcResponse<pb::LeaseLeasesResponse>, Status> {
        let resp = self.ctx.request(self.ctx.who(&req)?, Request::LeaseLeases).await?;
        match resp.body {
            ResponseBody::LeaseLeases { ids } => Ok(GrpcResponse::new(pb::LeaseLeasesResponse {
                header: self.ctx.header(Some(resp.header)),
                leases: ids.into_iter().map(|id| pb::LeaseStatus { id }).collect(),
            })),
            other => Err(unexpected("lease list", &other)),
        }
    }
}

/// Serves one keep-alive stream: one response per request, in order, until the client closes
/// its side, goes away, or a renewal fails for a reason other than an unknown lease.
async fn keep_alive(
    ctx: Ctx,
    mut inbound: Streaming<pb::LeaseKeepAliveRequest>,
    out: mpsc::Sender<Result<pb::LeaseKeepAliveResponse, Status>>,
) {
    loop {
        let req = tokio::select! {
            _ = out.closed() => return,
            req = inbound.next() => match req {
                Some(Ok(req)) => req,
                // The client closed its side, or the transport failed: nothing to answer.
                Some(Err(_)) | None => return,
            },
        };
        // The header is taken before the renewal, as etcd does, so its revision is never
        // past the point where the lease was known to be alive.
        let header = ctx.header(None);
        let answer = match ctx.node.request(Request::LeaseKeepAlive { id: req.id }).await {
            Ok(resp) => match resp.body {
                ResponseBody::LeaseKeepAlive { id, ttl_secs } => {
                    Ok(pb::LeaseKeepAliveResponse { header, id, ttl: ttl_secs })
                }
                other => Err(unexpected("lease keep-alive", &other)),
            },
            // etcd's answer for a lease that does not exist (expired or revoked): TTL 0.
            Err(Error::LeaseNotFound) => Ok(pb::LeaseKeepAliveResponse { header, id: req.id, ttl: 0 }),
            Err(e) => Err(status(&e)),
        };
        let failed = answer.is_err();
        if out.send(answer).await.is_err() || failed {
            return;
        }
    }
}
