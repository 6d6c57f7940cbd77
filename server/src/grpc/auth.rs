//! The Auth service: users, roles and permissions (changes through the log, reads from the
//! member's applied auth store, see `cairn_core::auth`), and Authenticate, which checks a
//! password against the stored bcrypt hash and answers a signed token (`credentials`).
//!
//! Passwords are hashed here, off the async threads, before anything enters the log: the log,
//! snapshots and backups hold hashes only, and no password is ever logged.

use cairn_core::auth::{AuthAnswer, AuthChange, AuthInfo, AuthQuery, PermKind, Permission};
use cairn_core::{Error, Request, ResponseBody};
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

use super::error::{status, unexpected};
use super::pb::etcdserverpb as pb;
use super::Ctx;
use crate::credentials;

pub(crate) struct AuthService {
    ctx: Ctx,
}

impl AuthService {
    pub(crate) fn new(ctx: Ctx) -> AuthService {
        AuthService { ctx }
    }

    /// Sends an auth store change through the log for `who`; the header of the answer.
    async fn change(
        &self,
        who: Option<AuthInfo>,
        change: AuthChange,
    ) -> Result<Option<pb::ResponseHeader>, Status> {
        let r = self.ctx.request(who, Request::Auth(change)).await?;
        match r.body {
            ResponseBody::Auth(AuthAnswer::Status { .. }) => Ok(self.ctx.header(Some(r.header))),
            other => Err(unexpected("auth change", &other)),
        }
    }

    async fn query(
        &self,
        who: Option<AuthInfo>,
        query: AuthQuery,
    ) -> Result<(AuthAnswer, Option<pb::ResponseHeader>), Status> {
        let r = self.ctx.request(who, Request::AuthQuery(query)).await?;
        match r.body {
            ResponseBody::Auth(answer) => Ok((answer, self.ctx.header(Some(r.header)))),
            other => Err(unexpected("auth query", &other)),
        }
    }

    /// bcrypt at the member's cost, off the async threads.
    async fn hash(&self, password: String) -> Result<String, Status> {
        let cost = self.ctx.info.auth.bcrypt_cost;
        tokio::task::spawn_blocking(move || credentials::hash_password(&password, cost))
            .await
            .map_err(|e| Status::internal(format!("cairn: password hashing failed: {e}")))?
            .map_err(|e| status(&e))
    }
}

pub(crate) fn perm_to_pb(p: &Permission) -> pb::Permission {
    let kind = match p.kind {
        PermKind::Read => pb::permission::Type::Read,
        PermKind::Write => pb::permission::Type::Write,
        PermKind::ReadWrite => pb::permission::Type::Readwrite,
    };
    pb::Permission { perm_type: kind.into(), key: p.key.clone(), range_end: p.range_end.clone() }
}

fn perm_from_pb(p: pb::Permission) -> Result<Permission, Status> {
    let kind = match pb::permission::Type::try_from(p.perm_type) {
        Ok(pb::permission::Type::Read) => PermKind::Read,
        Ok(pb::permission::Type::Write) => PermKind::Write,
        Ok(pb::permission::Type::Readwrite) => PermKind::ReadWrite,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "etcdserver: unknown permission type {}",
                p.perm_type
            )))
        }
    };
    Ok(Permission { kind, key: p.key, range_end: p.range_end })
}

type Answer<T> = Result<GrpcResponse<T>, Status>;

#[tonic::async_trait]
impl pb::auth_server::Auth for AuthService {
    async fn auth_enable(&self, req: GrpcRequest<pb::AuthEnableRequest>) -> Answer<pb::AuthEnableResponse> {
        let who = self.ctx.who(&req)?;
        let token_key = credentials::new_token_key().map_err(|e| status(&e))?;
        let header = self.change(who, AuthChange::Enable { token_key }).await?;
        Ok(GrpcResponse::new(pb::AuthEnableResponse { header }))
    }

    async fn auth_disable(
        &self,
        req: GrpcRequest<pb::AuthDisableRequest>,
    ) -> Answer<pb::AuthDisableResponse> {
        let header = self.change(self.ctx.who(&req)?, AuthChange::Disable).await?;
        Ok(GrpcResponse::new(pb::AuthDisableResponse { header }))
    }

    async fn authenticate(
        &self,
        req: GrpcRequest<pb::AuthenticateRequest>,
    ) -> Answer<pb::AuthenticateResponse> {
        let req = req.into_inner();
        let store = self.ctx.node.with_status(|st| st.auth.clone());
        if !store.is_enabled() {
            return Err(status(&Error::AuthNotEnabled));
        }
        let (user, password) = (req.name, req.password);
        let check = store.clone();
        let name = user.clone();
        let matches =
            tokio::task::spawn_blocking(move || credentials::password_matches(&check, &name, &password))
                .await
                .unwrap_or(false);
        if !matches {
            tracing::info!(user = %user, "authentication failed");
            return Err(status(&Error::AuthFailed));
        }
        let token =
            credentials::mint(&store, &user, self.ctx.info.auth.token_ttl, std::time::SystemTime::now())
                .ok_or_else(|| status(&Error::AuthFailed))?;
        Ok(GrpcResponse::new(pb::AuthenticateResponse { header: self.ctx.header(None), token }))
    }

    async fn user_add(&self, req: GrpcRequest<pb::AuthUserAddRequest>) -> Answer<pb::AuthUserAddResponse> {
        let who = self.ctx.who(&req)?;
        let req = req.into_inner();
        let no_password = req.options.is_some_and(|o| o.no_password);
        let password_hash = if no_password { None } else { Some(self.hash(req.password).await?) };
        let header = self.change(who, AuthChange::UserAdd { name: req.name, password_hash }).await?;
        Ok(GrpcResponse::new(pb::AuthUserAddResponse { header }))
    }

    async fn user_get(&self, req: GrpcRequest<pb::AuthUserGetRequest>) -> Answer<pb::AuthUserGetResponse> {
        let who = self.ctx.who(&req)?;
        let (answer, header) = self.query(who, AuthQuery::UserGet { name: req.into_inner().name }).await?;
        let AuthAnswer::UserRoles(roles) = answer else { return Err(unexpected("user", &answer)) };
        Ok(GrpcResponse::new(pb::AuthUserGetResponse { header, roles }))
    }

    async fn user_list(&self, req: GrpcRequest<pb::AuthUserListRequest>) -> Answer<pb::AuthUserListResponse> {
        let (answer, header) = self.query(self.ctx.who(&req)?, AuthQuery::UserList).await?;
        let AuthAnswer::Users(users) = answer else { return Err(unexpected("user list", &answer)) };
        Ok(GrpcResponse::new(pb::AuthUserListResponse { header, users }))
    }

    async fn user_delete(
        &self,
        req: GrpcRequest<pb::AuthUserDeleteRequest>,
    ) -> Answer<pb::AuthUserDeleteResponse> {
        let who = self.ctx.who(&req)?;
        let header = self.change(who, AuthChange::UserDelete { name: req.into_inner().name }).await?;
        Ok(GrpcResponse::new(pb::AuthUserDeleteResponse { header }))
    }

    async fn user_change_password(
        &self,
        req: GrpcRequest<pb::AuthUserChangePasswordRequest>,
    ) -> Answer<pb::AuthUserChangePasswordResponse> {
        let who = self.ctx.who(&req)?;
        let req = req.into_inner();
        let password_hash = Some(self.hash(req.password).await?);
        let header =
            self.change(who, AuthChange::UserChangePassword { name: req.name, password_hash }).await?;
        Ok(GrpcResponse::new(pb::AuthUserChangePasswordResponse { header }))
    }

    async fn user_grant_role(
        &self,
        req: GrpcRequest<pb::AuthUserGrantRoleRequest>,
    ) -> Answer<pb::AuthUserGrantRoleResponse> {
        let who = self.ctx.who(&req)?;
        let req = req.into_inner();
        let header = self.change(who, AuthChange::UserGrantRole { user: req.user, role: req.role }).await?;
        Ok(GrpcResponse::new(pb::AuthUserGrantRoleResponse { header }))
    }

    async fn user_revoke_role(
        &self,
        req: GrpcRequest<pb::AuthUserRevokeRoleRequest>,
    ) -> Answer<pb::AuthUserRevokeRoleResponse> {
        let who = self.ctx.who(&req)?;
        let req = req.into_inner();
        let header = self.change(who, AuthChange::UserRevokeRole { user: req.name, role: req.role }).await?;
        Ok(GrpcResponse::new(pb::AuthUserRevokeRoleResponse { header }))
    }

    async fn role_add(&self, req: GrpcRequest<pb::AuthRoleAddRequest>) -> Answer<pb::AuthRoleAddResponse> {
        let who = self.ctx.who(&req)?;
        let header = self.change(who, AuthChange::RoleAdd { name: req.into_inner().name }).await?;
        Ok(GrpcResponse::new(pb::AuthRoleAddResponse { header }))
    }

    async fn role_get(&self, req: GrpcRequest<pb::AuthRoleGetRequest>) -> Answer<pb::AuthRoleGetResponse> {
        let who = self.ctx.who(&req)?;
        let (answer, header) = self.query(who, AuthQuery::RoleGet { name: req.into_inner().role }).await?;
        let AuthAnswer::RolePerms(perms) = answer else { return Err(unexpected("role", &answer)) };
        Ok(GrpcResponse::new(pb::AuthRoleGetResponse {
            header,
            perm: perms.iter().map(perm_to_pb).collect(),
        }))
    }

    async fn role_list(&self, req: GrpcRequest<pb::AuthRoleListRequest>) -> Answer<pb::AuthRoleListResponse> {
        let (answer, header) = self.query(self.ctx.who(&req)?, AuthQuery::RoleList).await?;
        let AuthAnswer::Roles(roles) = answer else { return Err(unexpected("role list", &answer)) };
        Ok(GrpcResponse::new(pb::AuthRoleListResponse { header, roles }))
    }

    async fn role_delete(
        &self,
        req: GrpcRequest<pb::AuthRoleDeleteRequest>,
    ) -> Answer<pb::AuthRoleDeleteResponse> {
        let who = self.ctx.who(&req)?;
        let header = self.change(who, AuthChange::RoleDelete { name: req.into_inner().role }).await?;
        Ok(GrpcResponse::new(pb::AuthRoleDeleteResponse { header }))
    }

    async fn role_grant_permission(
        &self,
        req: GrpcRequest<pb::AuthRoleGrantPermissionRequest>,
    ) -> Answer<pb::AuthRoleGrantPermissionResponse> {
        let who = self.ctx.who(&req)?;
        let req = req.into_inner();
        let perm = perm_from_pb(req.perm.unwrap_or_default())?;
        let header = self.change(who, AuthChange::RoleGrantPermission { role: req.name, perm }).await?;
        Ok(GrpcResponse::new(pb::AuthRoleGrantPermissionResponse { header }))
    }

    async fn role_revoke_permission(
        &self,
        req: GrpcRequest<pb::AuthRoleRevokePermissionRequest>,
    ) -> Answer<pb::AuthRoleRevokePermissionResponse> {
        let who = self.ctx.who(&req)?;
        let req = req.into_inner();
        let change =
            AuthChange::RoleRevokePermission { role: req.role, key: req.key, range_end: req.range_end };
        let header = self.change(who, change).await?;
        Ok(GrpcResponse::new(pb::AuthRoleRevokePermissionResponse { header }))
    }
}
