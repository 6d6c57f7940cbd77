//! The Auth service, as etcd 3.4 answers it with authentication disabled and no users or roles.
//!
//! Cairn has no user store yet, so authentication is always disabled, and every answer below
//! is what etcd gives in that state: clients configured with a user and password call
//! Authenticate first, read "authentication is not enabled" and go on without a token (etcd's
//! Go client does so, as do the others), listing users or roles finds none, and a named user
//! or role is not found. What would change that state (adding a user or role, enabling
//! authentication) answers UNIMPLEMENTED and says so.

use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

use super::pb::etcdserverpb as pb;
use super::Ctx;

pub(crate) struct AuthService {
    ctx: Ctx,
}

impl AuthService {
    pub(crate) fn new(ctx: Ctx) -> AuthService {
        AuthService { ctx }
    }
}

/// etcd's answer to Authenticate while authentication is disabled (rpctypes'
/// ErrGRPCAuthNotEnabled).
pub(crate) fn auth_not_enabled() -> Status {
    Status::failed_precondition("etcdserver: authentication is not enabled")
}

fn user_not_found() -> Status {
    Status::failed_precondition("etcdserver: user name not found")
}

fn role_not_found() -> Status {
    Status::failed_precondition("etcdserver: role name not found")
}

fn not_implemented(what: &str) -> Status {
    Status::unimplemented(format!(
        "{what}: Cairn has no users, roles or authentication yet (they come with TLS and client-certificate auth)"
    ))
}

type Answer<T> = Result<GrpcResponse<T>, Status>;

#[tonic::async_trait]
impl pb::auth_server::Auth for AuthService {
    async fn auth_enable(&self, _req: GrpcRequest<pb::AuthEnableRequest>) -> Answer<pb::AuthEnableResponse> {
        Err(not_implemented("enabling authentication"))
    }

    async fn auth_disable(
        &self,
        _req: GrpcRequest<pb::AuthDisableRequest>,
    ) -> Answer<pb::AuthDisableResponse> {
        // Already disabled: etcd answers success.
        Ok(GrpcResponse::new(pb::AuthDisableResponse { header: self.ctx.header(None) }))
    }

    async fn authenticate(
        &self,
        _req: GrpcRequest<pb::AuthenticateRequest>,
    ) -> Answer<pb::AuthenticateResponse> {
        Err(auth_not_enabled())
    }

    async fn user_add(&self, _req: GrpcRequest<pb::AuthUserAddRequest>) -> Answer<pb::AuthUserAddResponse> {
        Err(not_implemented("adding a user"))
    }

    async fn user_get(&self, _req: GrpcRequest<pb::AuthUserGetRequest>) -> Answer<pb::AuthUserGetResponse> {
        Err(user_not_found())
    }

    async fn user_list(
        &self,
        _req: GrpcRequest<pb::AuthUserListRequest>,
    ) -> Answer<pb::AuthUserListResponse> {
        Ok(GrpcResponse::new(pb::AuthUserListResponse { header: self.ctx.header(None), users: vec![] }))
    }

    async fn user_delete(
        &self,
        _req: GrpcRequest<pb::AuthUserDeleteRequest>,
    ) -> Answer<pb::AuthUserDeleteResponse> {
        Err(user_not_found())
    }

    async fn user_change_password(
        &self,
        _req: GrpcRequest<pb::AuthUserChangePasswordRequest>,
    ) -> Answer<pb::AuthUserChangePasswordResponse> {
        Err(user_not_found())
    }

    async fn user_grant_role(
        &self,
        _req: GrpcRequest<pb::AuthUserGrantRoleRequest>,
    ) -> Answer<pb::AuthUserGrantRoleResponse> {
        Err(user_not_found())
    }

    async fn user_revoke_role(
        &self,
        _req: GrpcRequest<pb::AuthUserRevokeRoleRequest>,
    ) -> Answer<pb::AuthUserRevokeRoleResponse> {
        Err(user_not_found())
    }

    async fn role_add(&self, _req: GrpcRequest<pb::AuthRoleAddRequest>) -> Answer<pb::AuthRoleAddResponse> {
        Err(not_implemented("adding a role"))
    }

    async fn role_get(&self, _req: GrpcRequest<pb::AuthRoleGetRequest>) -> Answer<pb::AuthRoleGetResponse> {
        Err(role_not_found())
    }

    async fn role_list(
        &self,
        _req: GrpcRequest<pb::AuthRoleListRequest>,
    ) -> Answer<pb::AuthRoleListResponse> {
        Ok(GrpcResponse::new(pb::AuthRoleListResponse { header: self.ctx.header(None), roles: vec![] }))
    }

    async fn role_delete(
        &self,
        _req: GrpcRequest<pb::AuthRoleDeleteRequest>,
    ) -> Answer<pb::AuthRoleDeleteResponse> {
        Err(role_not_found())
    }

    async fn role_grant_permission(
        &self,
        _req: GrpcRequest<pb::AuthRoleGrantPermissionRequest>,
    ) -> Answer<pb::AuthRoleGrantPermissionResponse> {
        Err(role_not_found())
    }

    async fn role_revoke_permission(
        &self,
        _req: GrpcRequest<pb::AuthRoleRevokePermissionRequest>,
    ) -> Answer<pb::AuthRoleRevokePermissionResponse> {
        Err(role_not_found())
    }
}
