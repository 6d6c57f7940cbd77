//! The KV service: Range, Put, DeleteRange, Txn and Compact, each one core request.

use cairn_core::{Request, ResponseBody};
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

use super::convert;
use super::error::unexpected;
use super::pb::etcdserverpb as pb;
use super::Ctx;

pub(crate) struct KvService {
    ctx: Ctx,
}

impl KvService {
    pub(crate) fn new(ctx: Ctx) -> KvService {
        KvService { ctx }
    }
}

#[tonic::async_trait]
impl pb::kv_server::Kv for KvService {
    async fn range(
        &self,
        req: GrpcRequest<pb::RangeRequest>,
    ) -> Result<GrpcResponse<pb::RangeResponse>, Status> {
        let who = self.ctx.who(&req)?;
        let r = convert::range_request_from_pb(req.into_inner())?;
        let resp = self.ctx.request(who, Request::Range(r)).await?;
        match resp.body {
            ResponseBody::Range(r) => {
                Ok(GrpcResponse::new(convert::range_response_to_pb(r, self.ctx.header(Some(resp.header)))))
            }
            other => Err(unexpected("range", &other)),
        }
    }

    async fn put(&self, req: GrpcRequest<pb::PutRequest>) -> Result<GrpcResponse<pb::PutResponse>, Status> {
        let who = self.ctx.who(&req)?;
        let p = convert::put_request_from_pb(req.into_inner());
        let resp = self.ctx.request(who, Request::Put(p)).await?;
        match resp.body {
            ResponseBody::Put(p) => {
                Ok(GrpcResponse::new(convert::put_response_to_pb(p, self.ctx.header(Some(resp.header)))))
            }
            other => Err(unexpected("put", &other)),
        }
    }

    async fn delete_range(
        &self,
        req: GrpcRequest<pb::DeleteRangeRequest>,
    ) -> Result<GrpcResponse<pb::DeleteRangeResponse>, Status> {
        let who = self.ctx.who(&req)?;
        let d = convert::delete_request_from_pb(req.into_inner());
        let resp = self.ctx.request(who, Request::DeleteRange(d)).await?;
        match resp.body {
            ResponseBody::DeleteRange(d) => {
                Ok(GrpcResponse::new(convert::delete_response_to_pb(d, self.ctx.header(Some(resp.header)))))
            }
            other => Err(unexpected("delete range", &other)),
        }
    }

    async fn txn(&self, req: GrpcRequest<pb::TxnRequest>) -> Result<GrpcResponse<pb::TxnResponse>, Status> {
        let who = self.ctx.who(&req)?;
        let t = convert::txn_request_from_pb(req.into_inner())?;
        let resp = self.ctx.request(who, Request::Txn(t)).await?;
        match resp.body {
            ResponseBody::Txn(t) => {
                Ok(GrpcResponse::new(convert::txn_response_to_pb(t, self.ctx.header(Some(resp.header)))))
            }
            other => Err(unexpected("txn", &other)),
        }
    }

    async fn compact(
        &self,
        req: GrpcRequest<pb::CompactionRequest>,
    ) -> Result<GrpcResponse<pb::CompactionResponse>, Status> {
        let who = self.ctx.who(&req)?;
        let c = convert::compaction_request_from_pb(req.into_inner());
        let resp = self.ctx.request(who, Request::Compact(c)).await?;
        match resp.body {
            ResponseBody::Compact => {
                Ok(GrpcResponse::new(pb::CompactionResponse { header: self.ctx.header(Some(resp.header)) }))
            }
            other => Err(unexpected("compact", &other)),
        }
    }
}
