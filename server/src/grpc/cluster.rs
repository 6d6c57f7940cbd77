//! The Cluster service: the member list, from the member's configuration. Membership changes
//! are not supported yet and answer UNIMPLEMENTED.

use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

use super::convert::member_to_pb;
use super::pb::etcdserverpb as pb;
use super::Ctx;

pub(crate) struct ClusterService {
    ctx: Ctx,
}

impl ClusterService {
    pub(crate) fn new(ctx: Ctx) -> ClusterService {
        ClusterService { ctx }
    }
}

fn unsupported() -> Status {
    Status::unimplemented(
        "membership changes (MemberAdd, MemberRemove, MemberUpdate, MemberPromote) are not implemented in Cairn yet; the member list is fixed by --initial-cluster",
    )
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ClusterService {
    async fn member_add(
        &self,
        _req: GrpcRequest<pb::MemberAddRequest>,
    ) -> Result<GrpcResponse<pb::MemberAddResponse>, Status> {
        Err(unsupported())
    }

    async fn member_remove(
        &self,
        _req: GrpcRequest<pb::MemberRemoveRequest>,
    ) -> Result<GrpcResponse<pb::MemberRemoveResponse>, Status> {
        Err(unsupported())
    }

    async fn member_update(
        &self,
        _req: GrpcRequest<pb::MemberUpdateRequest>,
    ) -> Result<GrpcResponse<pb::MemberUpdateResponse>, Status> {
        Err(unsupported())
    }

    async fn member_list(
        &self,
        _req: GrpcRequest<pb::MemberListRequest>,
    ) -> Result<GrpcResponse<pb::MemberListResponse>, Status> {
        Ok(GrpcResponse::new(pb::MemberListResponse {
            // etcd's cluster service fills ids and term, not a revision.
            header: self.ctx.header(None).map(|h| pb::ResponseHeader { revision: 0, ..h }),
            members: self
                .ctx
                .info
                .members
                .iter()
                .map(|m| member_to_pb(&self.ctx.with_published(m)))
                .collect(),
        }))
    }

    async fn member_promote(
        &self,
        _req: GrpcRequest<pb::MemberPromoteRequest>,
    ) -> Result<GrpcResponse<pb::MemberPromoteResponse>, Status> {
        Err(unsupported())
    }
}
