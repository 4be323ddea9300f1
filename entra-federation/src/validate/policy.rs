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
///
/// ```
/// use entra_federation::validate::{KindPolicy, Policy};
/// let policy = Policy::new(
///     ["82323b11-6a7b-4c8d-9e0f-1a2b3c4d5e6f"],
///     KindPolicy::Require("Weather.Read".into()),
///     KindPolicy::Deny,
/// )
/// .with_expected_blueprint("4b1c…");
/// assert_eq!(policy.expected_blueprint.as_deref(), Some("4b1c…"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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

impl Policy {
    /// Tokens of these client apps (the agent identities; none means no caller is allowed), each
    /// kind authorised as given, under any Blueprint.
    pub fn new(
        allowed_app_ids: impl IntoIterator<Item = impl Into<String>>,
        app_only: KindPolicy,
        delegated: KindPolicy,
    ) -> Self {
        Self {
            allowed_app_ids: allowed_app_ids.into_iter().map(Into::into).collect(),
            expected_blueprint: None,
            app_only,
            delegated,
        }
    }

    /// Also requires `xms_par_app_azp` to name this Blueprint.
    pub fn with_expected_blueprint(mut self, blueprint: impl Into<String>) -> Self {
        self.expected_blueprint = Some(blueprint.into());
        self
    }
}
