//! Reference data in PostgreSQL: a load stores the files (validated by the domain parser)
//! and normalised tables in one transaction; services read the newest version.

use crate::sql::{placeholders, stmt};
use feepay_domain::reference::{DataErrors, ReferenceData};
use feepay_domain::waiver::{Effect, RuleSet};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, TransactionTrait, Value};
use sha2::{Digest, Sha256};
use std::path::Path;

/// The three reference files.
#[derive(Debug, Clone)]
pub struct ReferenceFiles {
    pub agencies: (String, String),
    pub fees: (String, String),
    pub waivers: (String, String),
}

impl ReferenceFiles {
    /// Reads `agencies.toml`, `fees.toml` and `waivers.toml` from a directory.
    pub fn read_dir(dir: &Path) -> std::io::Result<Self> {
        let read = |name: &str| -> std::io::Result<(String, String)> {
            let p = dir.join(name);
            let text = std::fs::read_to_string(&p)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
            Ok((p.display().to_string(), text))
        };
        Ok(ReferenceFiles {
            agencies: read("agencies.toml")?,
            fees: read("fees.toml")?,
            waivers: read("waivers.toml")?,
        })
    }

    /// Validates everything; returns every error with file and line.
    pub fn parse(&self) -> Result<(ReferenceData, RuleSet), DataErrors> {
        let reference = ReferenceData::parse(&self.agencies.0, &self.agencies.1, &self.fees.0, &self.fees.1)?;
        let rules = RuleSet::parse(&self.waivers.0, &self.waivers.1, &reference)?;
        Ok((reference, rules))
    }

    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for t in [&self.agencies.1, &self.fees.1, &self.waivers.1] {
            h.update(t.as_bytes());
            h.update([0]);
        }
        hex::encode(h.finalize())
    }
}

/// Reference data as a service uses it.
#[derive(Debug, Clone)]
pub struct LoadedReference {
    pub version: i64,
    pub reference: ReferenceData,
    pub rules: RuleSet,
}

/// Why a load failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Invalid(#[from] DataErrors),
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

/// Validates and stores a new version, all or nothing. Returns the version and whether it
/// changed anything (loading identical files again is a no-op).
pub async fn store(db: &DatabaseConnection, files: &ReferenceFiles, actor: &str) -> Result<(i64, bool), LoadError> {
    let (reference, rules) = files.parse()?;
    let digest = files.digest();
    let txn = db.begin().await?;
    txn.execute_unprepared("LOCK TABLE reference_versions IN EXCLUSIVE MODE").await?;
    if let Some(row) =
        txn.query_one(stmt("SELECT id, digest FROM reference_versions ORDER BY id DESC LIMIT 1", vec![])).await?
    {
        let (id, d): (i64, String) = (row.try_get("", "id")?, row.try_get("", "digest")?);
        if d == digest {
            txn.commit().await?;
            return Ok((id, false));
        }
    }
    let row = txn
        .query_one(stmt(
            "INSERT INTO reference_versions (loaded_by, agencies_toml, fees_toml, waivers_toml, digest) VALUES ($1,$2,$3,$4,$5) RETURNING id",
            vec![actor.into(), files.agencies.1.clone().into(), files.fees.1.clone().into(), files.waivers.1.clone().into(), digest.into()],
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("insert returned nothing".into()))?;
    let version: i64 = row.try_get("", "id")?;
    txn.execute_unprepared("DELETE FROM series; DELETE FROM waiver_rules; DELETE FROM fees; DELETE FROM agencies;")
        .await?;
    let mut v: Vec<Value> = Vec::new();
    for a in reference.agencies.values() {
        v.extend([
            a.code.clone().into(),
            a.name.clone().into(),
            a.tax_code.clone().into(),
            a.address.clone().into(),
            a.parent.clone().into(),
        ]);
    }
    if !reference.agencies.is_empty() {
        txn.execute(stmt(
            format!(
                "INSERT INTO agencies (code, name, tax_code, address, parent) VALUES {}",
                placeholders(reference.agencies.len(), 5)
            ),
            v,
        ))
        .await?;
    }
    let mut v: Vec<Value> = Vec::new();
    for s in &reference.series {
        let kinds: Vec<String> = s.kinds.iter().map(|k| k.code().to_string()).collect();
        v.extend([
            s.agency.clone().into(),
            s.template.clone().into(),
            s.letters.clone().into(),
            kinds.into(),
            s.title.clone().into(),
        ]);
    }
    if !reference.series.is_empty() {
        txn.execute(stmt(
            format!(
                "INSERT INTO series (agency, template, letters, kinds, title) VALUES {}",
                placeholders(reference.series.len(), 5)
            ),
            v,
        ))
        .await?;
    }
    let mut v: Vec<Value> = Vec::new();
    for f in reference.fees.values() {
        v.extend([
            f.code.clone().into(),
            f.name.clone().into(),
            f.kind.code().into(),
            f.base_amount.dong().into(),
            f.authority.clone().into(),
        ]);
    }
    if !reference.fees.is_empty() {
        txn.execute(stmt(
            format!(
                "INSERT INTO fees (code, name, kind, base_amount, authority) VALUES {}",
                placeholders(reference.fees.len(), 5)
            ),
            v,
        ))
        .await?;
    }
    let mut v: Vec<Value> = Vec::new();
    for r in &rules.rules {
        let definition = serde_json::json!({
            "description": r.description,
            "signed_on": r.legal.signed_on,
            "scope": r.scope,
            "conditions": r.conditions,
            "effect": match r.effect {
                Effect::PercentOff(p) => serde_json::json!({"kind": "percent_off", "percent": p.to_string()}),
                Effect::AmountOff(a) => serde_json::json!({"kind": "amount_off", "amount": a.dong()}),
                Effect::SetAmount(a) => serde_json::json!({"kind": "set_amount", "amount": a.dong()}),
                Effect::Exempt => serde_json::json!({"kind": "exempt"}),
            },
        });
        v.extend([
            r.id.clone().into(),
            r.legal.document_number.clone().into(),
            r.legal.issuing_body.clone().into(),
            r.valid_from.into(),
            r.valid_until.into(),
            r.priority.into(),
            definition.into(),
        ]);
    }
    if !rules.rules.is_empty() {
        txn.execute(stmt(
            format!(
                "INSERT INTO waiver_rules (id, document_number, issuing_body, valid_from, valid_until, priority, definition) VALUES {}",
                placeholders(rules.rules.len(), 7)
            ),
            v,
        ))
        .await?;
    }
    txn.execute(stmt(
        "INSERT INTO audit_log (actor, action, target, details) VALUES ($1, 'reference.load', $2, $3)",
        vec![
            actor.into(),
            format!("reference version {version}").into(),
            serde_json::json!({"agencies": reference.agencies.len(), "series": reference.series.len(), "fees": reference.fees.len(), "rules": rules.rules.len()}).into(),
        ],
    ))
    .await?;
    txn.commit().await?;
    Ok((version, true))
}

/// Id of the newest version, if any.
pub async fn latest_version<C: ConnectionTrait>(db: &C) -> Result<Option<i64>, DbErr> {
    Ok(match db.query_one(stmt("SELECT max(id) AS id FROM reference_versions", vec![])).await? {
        Some(r) => r.try_get::<Option<i64>>("", "id")?,
        None => None,
    })
}

/// Loads and parses the newest version. Stored files were valid when loaded; they are parsed
/// again with the running code so every service applies exactly the same rules.
pub async fn load_latest<C: ConnectionTrait>(db: &C) -> Result<Option<LoadedReference>, LoadError> {
    let Some(row) = db
        .query_one(stmt(
            "SELECT id, agencies_toml, fees_toml, waivers_toml FROM reference_versions ORDER BY id DESC LIMIT 1",
            vec![],
        ))
        .await?
    else {
        return Ok(None);
    };
    let version: i64 = row.try_get("", "id")?;
    let files = ReferenceFiles {
        agencies: (format!("reference v{version} agencies.toml"), row.try_get("", "agencies_toml")?),
        fees: (format!("reference v{version} fees.toml"), row.try_get("", "fees_toml")?),
        waivers: (format!("reference v{version} waivers.toml"), row.try_get("", "waivers_toml")?),
    };
    let (reference, rules) = files.parse()?;
    Ok(Some(LoadedReference { version, reference, rules }))
}

/// The newest stored reference data, parsed once per version and shared by a service's
/// tasks (the one cache of the issuer, the assessor and the notifier).
#[derive(Debug, Default)]
pub struct Cache {
    current: std::sync::RwLock<Option<std::sync::Arc<LoadedReference>>>,
}

/// The reference data in use, and whether this call loaded a newer version.
#[derive(Debug, Clone)]
pub struct Current {
    pub reference: std::sync::Arc<LoadedReference>,
    pub newly_loaded: bool,
}

/// Why no reference data can be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("no reference data loaded: run `receiptctl reference load`")]
    Missing,
    #[error("reference data unusable: {0}")]
    Load(#[from] LoadError),
}

impl Cache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The newest version: from memory when it is still the newest stored, else loaded
    /// and parsed (one cheap query per call to see whether a newer version exists).
    pub async fn current<C: ConnectionTrait>(&self, db: &C) -> Result<Current, CacheError> {
        let latest = latest_version(db).await.map_err(LoadError::from)?.ok_or(CacheError::Missing)?;
        if let Some(r) = self.current.read().expect("reference cache lock").as_ref().filter(|r| r.version == latest) {
            return Ok(Current { reference: r.clone(), newly_loaded: false });
        }
        let loaded = std::sync::Arc::new(load_latest(db).await?.ok_or(CacheError::Missing)?);
        tracing::info!(version = loaded.version, "reference data loaded");
        *self.current.write().expect("reference cache lock") = Some(loaded.clone());
        Ok(Current { reference: loaded, newly_loaded: true })
    }
}
