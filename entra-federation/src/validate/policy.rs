//! Who may call: which agent identities, under which Blueprint, with which kind of token.

/// How one kind of token (app-only or delegated) is authorised.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KindPolicy {
    /// Refused.
    Deny,
    /// Accepted when it carries this permission (an app role in `roles`, or a scope in `scp`).
    Require(String),
}

/// The authorisation policy applied after the signature and standard claims check out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Client app ids (`appid` in v1, `azp` in v2) allowed to call: the agent identities.
    pub allowed_app_ids: Vec<String>,
    /// When set, `xms_par_app_azp` must name this Blueprint.
    pub expected_blueprint: Option<String>,
    /// App-only tokens (`idtyp=app`, the autonomous flow).
    pub app_only: KindPolicy,
    /// Delegated tokens (`idtyp=user`, on behalf of a user).
    pub delegated: KindPolicy,
}
