//! Who may do what: operators, their role and agency scope, and the audit log.
//!
//! Until the first operator is added, the tool runs open (as the local administrator named by
//! `--operator`), which is what a fresh local stack needs. Once an operator has existed —
//! even if every one was revoked since — every command needs a token (`--token` or `FEEPAY_OPERATOR_TOKEN`); an operator scoped to an
//! agency sees and acts on that agency and the agencies below it only. Tokens are shown once
//! and only their SHA-256 is stored.
//!
//! The database holds a login of the `feepay_operator` role to the operator bound to it
//! (`--db-login`, row-level security of migration 0011), whatever client it uses; the tool
//! refuses a token of another operator on such a login. The schema owner's connection is the
//! break-glass path and is only held by the token's operator checks here.

use anyhow::{bail, Context};
use feepay_runtime::operators::entity as operators;
use feepay_runtime::sql::stmt;
use rand::RngCore;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect,
};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// What an operator may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Reads: searches, reports, audits, dead-letter inspection.
    Auditor,
    /// Reads and acts: cancel, replace, resend, replay.
    Operator,
    /// Everything, including reference data, keys and operators.
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> anyhow::Result<Role> {
        Ok(match s {
            "auditor" => Role::Auditor,
            "operator" => Role::Operator,
            "admin" => Role::Admin,
            _ => bail!("role must be auditor, operator or admin"),
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Auditor => "auditor",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Actor {
    pub name: String,
    pub role: Role,
    /// `None`: every agency. `Some`: the agency codes of the scope's subtree.
    pub agencies: Option<BTreeSet<String>>,
    /// No operators are configured: open local mode.
    pub open: bool,
}

/// Refusal: exit code 4.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

/// A fresh token: `fp_` and 32 random bytes in hex.
pub fn new_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("fp_{}", hex::encode(b))
}

/// The agency and every agency below it.
pub async fn subtree(db: &DatabaseConnection, agency: &str) -> anyhow::Result<BTreeSet<String>> {
    use feepay_runtime::refdata::tables::agencies;
    // The tree is small (an agency per centre and desk): read it whole and walk it here.
    let edges: Vec<(String, Option<String>)> = agencies::Entity::find()
        .select_only()
        .columns([agencies::Column::Code, agencies::Column::Parent])
        .into_tuple()
        .all(db)
        .await?;
    let mut set = BTreeSet::new();
    if edges.iter().any(|(code, _)| code == agency) {
        set.insert(agency.to_string());
        loop {
            let below: Vec<String> = edges
                .iter()
                .filter(|(code, parent)| !set.contains(code) && parent.as_ref().is_some_and(|p| set.contains(p)))
                .map(|(code, _)| code.clone())
                .collect();
            if below.is_empty() {
                break;
            }
            set.extend(below);
        }
    }
    if set.is_empty() {
        // An agency not (yet) in the reference data still scopes to itself.
        set.insert(agency.to_string());
    }
    Ok(set)
}

/// Resolves the caller from a token, or the open local mode when no operator exists.
pub async fn authenticate(db: &DatabaseConnection, token: Option<&str>, fallback_name: &str) -> anyhow::Result<Actor> {
    // Open mode exists only before the first operator: revoking everyone never reopens it.
    let ever = operators::Entity::find().count(db).await?;
    let Some(token) = token.filter(|t| !t.trim().is_empty()) else {
        if let Some(login) = rls_login(db).await? {
            return Err(if ever == 0 {
                unbound(&login)
            } else {
                Denied("operators are configured: give your token with --token or FEEPAY_OPERATOR_TOKEN".into())
            }
            .into());
        }
        if ever == 0 {
            return Ok(Actor { name: fallback_name.to_string(), role: Role::Admin, agencies: None, open: true });
        }
        return Err(Denied(
            "operators are configured: give your token with --token or FEEPAY_OPERATOR_TOKEN (an admin creates one with `receiptctl operators add`)".into(),
        )
        .into());
    };
    let row = operators::Entity::find()
        .filter(operators::Column::TokenSha256.eq(token_hash(token)))
        .filter(operators::Column::RevokedAt.is_null())
        .one(db)
        .await?;
    let Some(operators::Model { name, role, scope, .. }) = row else {
        return Err(Denied("the token is unknown or revoked".into()).into());
    };
    if let Some(login) = rls_login(db).await? {
        let bound = feepay_runtime::operators::bound_to(db, &login).await?.filter(|o| o.revoked_at.is_none());
        match bound {
            None => return Err(unbound(&login).into()),
            Some(o) if o.name != name => {
                return Err(Denied(format!(
                    "the token belongs to {name}, but database login {login} is bound to operator {}",
                    o.name
                ))
                .into())
            }
            Some(_) => {}
        }
    }
    Ok(Actor {
        name,
        role: Role::parse(&role)?,
        agencies: if scope == "*" { None } else { Some(subtree(db, &scope).await?) },
        open: false,
    })
}

/// The login, when the database holds this connection to an operator's scope (a login in
/// the `feepay_operator` role); `None` for the schema owner.
async fn rls_login(db: &DatabaseConnection) -> anyhow::Result<Option<String>> {
    // Server functions, not a table: there is nothing for an entity to name.
    let row = db
        .query_one(stmt("SELECT row_security_active('receipts') AS rls, session_user::TEXT AS login", vec![]))
        .await?
        .context("no answer")?;
    Ok(row.try_get::<bool>("", "rls")?.then(|| row.try_get::<String>("", "login")).transpose()?)
}

fn unbound(login: &str) -> Denied {
    Denied(format!(
        "database login {login} is bound to no active operator: an admin binds it with \
         `receiptctl operators add NAME --role ROLE --scope AGENCY --db-login {login}`"
    ))
}

/// Is there a PostgreSQL role of this name?
pub async fn login_exists(db: &DatabaseConnection, login: &str) -> anyhow::Result<bool> {
    // The server's catalogue, not a table of the schema.
    Ok(db.query_one(stmt("SELECT 1 AS x FROM pg_roles WHERE rolname = $1", vec![login.into()])).await?.is_some())
}

impl Actor {
    pub fn require(&self, role: Role, what: &str) -> Result<(), Denied> {
        if self.role >= role {
            Ok(())
        } else {
            Err(Denied(format!(
                "{} is {} and may not {what}; this needs the {} role",
                self.name,
                self.role.as_str(),
                role.as_str()
            )))
        }
    }

    /// May the caller see or act on this agency's data?
    pub fn covers(&self, agency: &str) -> bool {
        self.agencies.as_ref().is_none_or(|a| a.contains(agency))
    }

    pub fn check_agency(&self, agency: &str) -> Result<(), Denied> {
        if self.covers(agency) {
            Ok(())
        } else {
            Err(Denied(format!("{} may not see or act on agency {agency}: it is outside their scope", self.name)))
        }
    }

    /// The scope as an SQL array value for `agency_code = ANY($n)`, or `None` for all.
    pub fn scope_value(&self) -> Option<Vec<String>> {
        self.agencies.as_ref().map(|a| a.iter().cloned().collect())
    }

    /// Records an action in the audit log.
    pub async fn record(
        &self,
        db: &impl ConnectionTrait,
        action: &str,
        target: &str,
        reason: Option<&str>,
        details: serde_json::Value,
    ) -> anyhow::Result<()> {
        use feepay_runtime::audit;
        audit::record(db, audit::Entry { actor: &self.name, action, target, reason, details }).await?;
        Ok(())
    }
}
