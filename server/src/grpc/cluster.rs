//! The Cluster service: the member list as this member has applied it, and membership changes
//! (add, remove, update, promote), which the core hands to the leader to check and propose and
//! answers once they apply.

use cairn_core::{Request, ResponseBody};
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

use super::convert::member_to_pb;
use super::pb::etcdserverpb as pb;
use super::Ctx;
use crate::info::MemberInfo;

pub(crate) struct ClusterService {
    ctx: Ctx,
}

impl ClusterService {
    pub(crate) fn new(ctx: Ctx) -> ClusterService {
        ClusterService { ctx }
    }

    /// Sends a membership change; the member concerned, every member after the change, and
    /// the header.
    async fn change(
        &self,
        who: Option<cairn_core::auth::AuthInfo>,
        request: Request,
    ) -> Result<(Option<pb::Member>, Vec<pb::Member>, Option<pb::ResponseHeader>), Status> {
        let r = self.ctx.request(who, request).await?;
        match r.body {
            ResponseBody::Members { member, members } => Ok((
                member.as_ref().map(|m| member_to_pb(&MemberInfo::from(m))),
                members.iter().map(|m| member_to_pb(&MemberInfo::from(m))).collect(),
                // etcd's cluster service fills ids and term, not a revision.
                self.ctx.header(Some(r.header)).map(|h| pb::ResponseHeader { revision: 0, ..h }),
            )),
            other => Err(super::error::unexpected("membership", &other)),
        }
    }
}

/// etcd's check of peer URLs (`types.NewURLs`): at least one, each `http` or `https` with a
/// host and port and no path.
pub fn check_peer_urls(urls: &[String]) -> Result<(), Status> {
    let bad = || Status::invalid_argument("etcdserver: given member URLs are invalid");
    if urls.is_empty() {
        return Err(bad());
    }
    for u in urls {
        let rest = u.strip_prefix("http://").or_else(|| u.strip_prefix("https://")).ok_or_else(bad)?;
        let hostport = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = hostport.rsplit_once(':').ok_or_else(bad)?;
        if host.is_empty() || hostport.contains('/') || port.parse::<u16>().is_err() {
            return Err(bad());
        }
    }
    Ok(())
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ClusterService {
    async fn member_add(
        &self,
        req: GrpcRequest<pb::MemberAddRequest>,
    ) -> Result<GrpcResponse<pb::MemberAddResponse>, Status> {
        let who = self.ctx.who(&req)?;
        let req = req.into_inner();
        check_peer_urls(&req.peer_ur_ls)?;
        let request = Request::MemberAdd { id: 0, peer_urls: req.peer_ur_ls, learner: req.is_learner };
        let (member, members, header) = self.change(who, request).await?;
        Ok(GrpcResponse::new(pb::MemberAddResponse { header, member, members }))
    }

    async fn member_remove(
        &self,
        req: GrpcRequest<pb::MemberRemoveRequest>,
    ) -> Result<GrpcResponse<pb::MemberRemoveResponse>, Status> {
        let who = self.ctx.who(&req)?;
        let (_, members, header) =
            self.change(who, Request::MemberRemove { id: req.into_inner().id }).await?;
        Ok(GrpcResponse::new(pb::MemberRemoveResponse { header, members }))
    }

    async fn member_update(
        &self,
        req: GrpcRequest<pb::MemberUpdateRequest>,
    ) -> Result<GrpcResponse<pb::MemberUpdateResponse>, Status> {
        let who = self.ctx.who(&req)?;
        let req = req.into_inner();
        check_peer_urls(&req.peer_ur_ls)?;
        let request = Request::MemberUpdate { id: req.id, peer_urls: req.peer_ur_ls };
        let (_, members, header) = self.change(who, request).await?;
        Ok(GrpcResponse::new(pb::MemberUpdateResponse { header, members }))
    }

    async fn member_list(
        &self,
        _req: GrpcRequest<pb::MemberListRequest>,
    ) -> Result<GrpcResponse<pb::MemberListResponse>, Status> {
        Ok(GrpcResponse::new(pb::MemberListResponse {
            // etcd's cluster service fills ids and term, not a revision.
            header: self.ctx.header(None).map(|h| pb::ResponseHeader { revision: 0, ..h }),
            members: self.ctx.members().iter().map(member_to_pb).collect(),
        }))
    }

    async fn member_promote(
        &self,
        req: GrpcRequest<pb::MemberPromoteRequest>,
    ) -> Result<GrpcResponse<pb::MemberPromoteResponse>, Status> {
        let who = self.ctx.who(&req)?;
        let (_, members, header) =
            self.change(who, Request::MemberPromote { id: req.into_inner().id }).await?;
        Ok(GrpcResponse::new(pb::MemberPromoteResponse { header, members }))
    }
}
