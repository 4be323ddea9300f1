//! IAM policy documents and their evaluation: explicit deny wins, then any allow, else implicit
//! deny. `Action`/`NotAction` and `Resource`/`NotResource` are evaluated; conditions support the
//! string operators trust policies for web identity use. An element or operator this emulation
//! does not evaluate is an error, never silently dropped (a dropped `Deny` would allow).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// One value or a list, as IAM JSON allows for most fields.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single value.
    One(String),
    /// A list.
    Many(Vec<String>),
}

impl OneOrMany {
    fn iter(&self) -> impl Iterator<Item = &str> {
        let v: Vec<&str> = match self {
            Self::One(s) => vec![s.as_str()],
            Self::Many(v) => v.iter().map(String::as_str).collect(),
        };
        v.into_iter()
    }
}

/// A policy document.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    /// `Version`.
    #[serde(rename = "Version", default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `Id`.
    #[serde(rename = "Id", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `Statement`.
    #[serde(rename = "Statement")]
    pub statement: Statements,
}

/// One statement or a list.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Statements {
    /// A single statement.
    One(Box<Statement>),
    /// A list.
    Many(Vec<Statement>),
}

/// `Allow` or `Deny`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Effect {
    /// Allow.
    Allow,
    /// Deny.
    Deny,
}

/// A statement.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// `Sid`.
    #[serde(rename = "Sid", default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// `Effect`.
    #[serde(rename = "Effect")]
    pub effect: Effect,
    /// `Principal` (trust policies): `{"Federated": …}`.
    #[serde(rename = "Principal", default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<BTreeMap<String, OneOrMany>>,
    /// `Action` (exactly one of `Action` and `NotAction`).
    #[serde(rename = "Action", default, skip_serializing_if = "Option::is_none")]
    pub action: Option<OneOrMany>,
    /// `NotAction`: every action but these.
    #[serde(rename = "NotAction", default, skip_serializing_if = "Option::is_none")]
    pub not_action: Option<OneOrMany>,
    /// `Resource` (permission policies).
    #[serde(rename = "Resource", default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<OneOrMany>,
    /// `NotResource`: every resource but these.
    #[serde(
        rename = "NotResource",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub not_resource: Option<OneOrMany>,
    /// `Condition`: operator → key → values.
    #[serde(rename = "Condition", default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<BTreeMap<String, BTreeMap<String, OneOrMany>>>,
}

/// The operators supported in `Condition`.
pub const OPERATORS: &[&str] = &[
    "StringEquals",
    "StringNotEquals",
    "StringEqualsIgnoreCase",
    "StringLike",
    "StringNotLike",
];

/// What is asked.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// e.g. `sts:AssumeRoleWithWebIdentity`.
    pub action: &'a str,
    /// The resource ARN (permission policies).
    pub resource: Option<&'a str>,
    /// The federated principal (trust policies).
    pub federated: Option<&'a str>,
    /// Condition keys (lower-cased names) and values.
    pub context: &'a HashMap<String, String>,
}

/// The outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// An allow matched and no deny did.
    Allow,
    /// Nothing allowed it.
    ImplicitDeny,
    /// A deny matched.
    ExplicitDeny,
}

impl PolicyDocument {
    fn statements(&self) -> Vec<&Statement> {
        match &self.statement {
            Statements::One(s) => vec![s],
            Statements::Many(v) => v.iter().collect(),
        }
    }

    /// Checks the document's shape (exactly one of `Action`/`NotAction`, at most one of
    /// `Resource`/`NotResource`) and that only supported condition operators are used.
    pub fn validate(&self) -> Result<(), String> {
        for s in self.statements() {
            match (&s.action, &s.not_action) {
                (Some(_), Some(_)) => {
                    return Err("a statement has both Action and NotAction".into());
                }
                (None, None) => return Err("a statement has neither Action nor NotAction".into()),
                _ => {}
            }
            if s.resource.is_some() && s.not_resource.is_some() {
                return Err("a statement has both Resource and NotResource".into());
            }
            for op in s.condition.iter().flat_map(|c| c.keys()) {
                if !OPERATORS.contains(&op.as_str()) {
                    return Err(format!(
                        "condition operator {op} is not supported by the local cloud (supported: {})",
                        OPERATORS.join(", ")
                    ));
                }
            }
        }
        Ok(())
    }
}

impl PolicyDocument {
    /// [`Self::validate`] for a permission (identity or session) policy: each statement names
    /// its resources (`Resource` or `NotResource`) and no principal. A statement without
    /// resources would match nothing, so a `Deny` written that way would be silently dropped.
    pub fn validate_permission(&self) -> Result<(), String> {
        self.validate()?;
        for s in self.statements() {
            if s.resource.is_none() && s.not_resource.is_none() {
                return Err("a permission statement has neither Resource nor NotResource".into());
            }
            if s.principal.is_some() {
                return Err(
                    "a permission statement has a Principal (only trust policies name one)".into(),
                );
            }
        }
        Ok(())
    }
}

/// Evaluates `docs` for `req`.
pub fn decide(docs: &[&PolicyDocument], req: &Request<'_>) -> Decision {
    let mut allowed = false;
    for s in docs.iter().flat_map(|d| d.statements()) {
        if !statement_matches(s, req) {
            continue;
        }
        match s.effect {
            Effect::Deny => return Decision::ExplicitDeny,
            Effect::Allow => allowed = true,
        }
    }
    if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

fn statement_matches(s: &Statement, req: &Request<'_>) -> bool {
    let action = req.action.to_ascii_lowercase();
    let names_action =
        |list: &OneOrMany| list.iter().any(|a| glob(&a.to_ascii_lowercase(), &action));
    let action_matches = match (&s.action, &s.not_action) {
        (Some(list), None) => names_action(list),
        (None, Some(list)) => !names_action(list),
        // `validate` refuses the other shapes; a statement that gets here anyway matches nothing.
        _ => false,
    };
    if !action_matches {
        return false;
    }
    if let Some(resource) = req.resource {
        let matches = match (&s.resource, &s.not_resource) {
            (Some(r), None) => r.iter().any(|p| glob(p, resource)),
            (None, Some(r)) => !r.iter().any(|p| glob(p, resource)),
            _ => false,
        };
        if !matches {
            return false;
        }
    }
    if let Some(federated) = req.federated {
        let Some(principal) = &s.principal else {
            return false;
        };
        if !principal
            .get("Federated")
            .is_some_and(|f| f.iter().any(|p| p == federated))
        {
            return false;
        }
    }
    s.condition.iter().flat_map(|c| c.iter()).all(|(op, keys)| {
        keys.iter().all(|(key, values)| {
            let actual = req.context.get(&key.to_ascii_lowercase());
            match (op.as_str(), actual) {
                ("StringEquals", Some(a)) => values.iter().any(|v| v == a),
                ("StringEqualsIgnoreCase", Some(a)) => {
                    values.iter().any(|v| v.eq_ignore_ascii_case(a))
                }
                ("StringLike", Some(a)) => values.iter().any(|v| glob(v, a)),
                ("StringNotEquals", Some(a)) => values.iter().all(|v| v != a),
                ("StringNotLike", Some(a)) => values.iter().all(|v| !glob(v, a)),
                // A negated operator on a missing key matches; the others do not.
                ("StringNotEquals" | "StringNotLike", None) => true,
                _ => false,
            }
        })
    })
}

/// IAM wildcard match: `*` any run, `?` any one character.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(v: serde_json::Value) -> PolicyDocument {
        serde_json::from_value(v).unwrap()
    }

    fn ctx(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect()
    }

    #[test]
    fn trust_policy_pins_aud_and_sub() {
        let d = doc(
            serde_json::json!({"Statement":[{"Effect":"Allow","Principal":{"Federated":"arn:p"},"Action":"sts:AssumeRoleWithWebIdentity",
            "Condition":{"StringEquals":{"h/:aud":"api://a","h/:sub":"s"}}}]}),
        );
        let good = ctx(&[("h/:aud", "api://a"), ("h/:sub", "s")]);
        let req = |c| Request {
            action: "sts:AssumeRoleWithWebIdentity",
            resource: None,
            federated: Some("arn:p"),
            context: c,
        };
        assert_eq!(decide(&[&d], &req(&good)), Decision::Allow);
        let wrong_sub = ctx(&[("h/:aud", "api://a"), ("h/:sub", "other")]);
        assert_eq!(decide(&[&d], &req(&wrong_sub)), Decision::ImplicitDeny);
        let no_sub = ctx(&[("h/:aud", "api://a")]);
        assert_eq!(decide(&[&d], &req(&no_sub)), Decision::ImplicitDeny);
        let other_provider = Request {
            federated: Some("arn:q"),
            ..req(&good)
        };
        assert_eq!(decide(&[&d], &other_provider), Decision::ImplicitDeny);
    }

    #[test]
    fn permission_policy_resources_and_explicit_deny() {
        let allow = doc(
            serde_json::json!({"Statement":{"Effect":"Allow","Action":"bedrock:InvokeModel","Resource":["arn:aws:bedrock:*::foundation-model/anthropic.*"]}}),
        );
        let deny = doc(
            serde_json::json!({"Statement":[{"Effect":"Deny","Action":"bedrock:*","Resource":"*"}]}),
        );
        let empty = HashMap::new();
        let req = Request {
            action: "bedrock:InvokeModel",
            resource: Some("arn:aws:bedrock:us-east-2::foundation-model/anthropic.claude"),
            federated: None,
            context: &empty,
        };
        assert_eq!(decide(&[&allow], &req), Decision::Allow);
        assert_eq!(decide(&[&allow, &deny], &req), Decision::ExplicitDeny);
        let other = Request {
            resource: Some("arn:aws:bedrock:us-east-2::foundation-model/meta.llama"),
            ..req
        };
        assert_eq!(decide(&[&allow], &other), Decision::ImplicitDeny);
    }

    #[test]
    fn unsupported_operators_are_refused() {
        let d = doc(
            serde_json::json!({"Statement":[{"Effect":"Allow","Action":"*","Condition":{"NumericLessThan":{"k":"1"}}}]}),
        );
        assert!(d.validate().unwrap_err().contains("NumericLessThan"));
    }

    #[test]
    fn not_action_and_not_resource_are_evaluated() {
        // "Everything but IAM" and "everything but one model", as IAM reads them.
        let d = doc(serde_json::json!({"Statement":[
            {"Effect":"Allow","NotAction":"iam:*","Resource":"*"},
            {"Effect":"Deny","Action":"bedrock:InvokeModel","NotResource":"arn:aws:bedrock:*::foundation-model/anthropic.*"}
        ]}));
        d.validate().unwrap();
        let empty = HashMap::new();
        let invoke = |resource| Request {
            action: "bedrock:InvokeModel",
            resource: Some(resource),
            federated: None,
            context: &empty,
        };
        assert_eq!(
            decide(
                &[&d],
                &invoke("arn:aws:bedrock:us-east-2::foundation-model/anthropic.claude")
            ),
            Decision::Allow
        );
        assert_eq!(
            decide(
                &[&d],
                &invoke("arn:aws:bedrock:us-east-2::foundation-model/meta.llama")
            ),
            Decision::ExplicitDeny
        );
        let iam = Request {
            action: "iam:PassRole",
            ..invoke("*")
        };
        assert_eq!(decide(&[&d], &iam), Decision::ImplicitDeny);
    }

    #[test]
    fn unknown_policy_elements_are_errors_never_dropped() {
        for bad in [
            serde_json::json!({"Statement":[{"Effect":"Allow","Action":"*","Resource":"*","NotPrincipal":{"AWS":"x"}}]}),
            serde_json::json!({"Statement":[{"Effect":"Allow","Action":"*","Resource":"*","Conditions":{}}]}),
            serde_json::json!({"Statment":[{"Effect":"Allow","Action":"*"}]}),
        ] {
            assert!(
                serde_json::from_value::<PolicyDocument>(bad.clone()).is_err(),
                "{bad}"
            );
        }
        let both = doc(
            serde_json::json!({"Statement":{"Effect":"Allow","Action":"*","NotAction":"iam:*","Resource":"*"}}),
        );
        assert!(both.validate().unwrap_err().contains("NotAction"));
        let neither = doc(serde_json::json!({"Statement":{"Effect":"Allow","Resource":"*"}}));
        assert!(neither.validate().unwrap_err().contains("Action"));
    }

    #[test]
    fn permission_statements_must_name_resources_and_no_principal() {
        let no_resource =
            doc(serde_json::json!({"Statement":{"Effect":"Deny","Action":"bedrock:*"}}));
        assert!(no_resource.validate().is_ok(), "a trust-policy shape");
        assert!(
            no_resource
                .validate_permission()
                .unwrap_err()
                .contains("Resource")
        );
        let principal = doc(
            serde_json::json!({"Statement":{"Effect":"Allow","Action":"*","Resource":"*","Principal":{"AWS":"*"}}}),
        );
        assert!(
            principal
                .validate_permission()
                .unwrap_err()
                .contains("Principal")
        );
        let fine = doc(
            serde_json::json!({"Statement":{"Effect":"Deny","Action":"bedrock:*","NotResource":"arn:aws:bedrock:*::foundation-model/anthropic.*"}}),
        );
        fine.validate_permission().unwrap();
    }

    #[test]
    fn globbing() {
        assert!(glob("a*c", "abbbc"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "abbc"));
        assert!(glob("*", ""));
        assert!(!glob("abc", "abcd"));
    }
}
