//! Reference data in PostgreSQL: a load stores the files (validated by the domain parser)
//! and normalised tables in one transaction; services read the newest version.

pub mod tables;

use feepay_domain::reference::{DataErrors, ReferenceData};
use feepay_domain::waiver::{Effect, RuleSet};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryOrder, QuerySelect,
    TransactionTrait,
};
use sha2::{Digest, Sha256};
use std::path::Path;
use tables::{agencies, fees, series, versions, waiver_rules};

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
    // Two loads at once would both see the same newest version: a table lock (which
    // sea-orm has no form for) makes the second wait and then find the first's digest.
    txn.execute_unprepared("LOCK TABLE reference_versions IN EXCLUSIVE MODE").await?;
    let newest: Option<(i64, String)> = versions::Entity::find()
        .select_only()
        .columns([versions::Column::Id, versions::Column::Digest])
        .order_by_desc(versions::Column::Id)
        .into_tuple()
        .one(&txn)
        .await?;
    if let Some((id, d)) = newest {
        if d == digest {
            txn.commit().await?;
            return Ok((id, false));
        }
    }
    let version = versions::Entity::insert(versions::ActiveModel {
        loaded_by: Set(actor.to_string()),
        agencies_toml: Set(files.agencies.1.clone()),
        fees_toml: Set(files.fees.1.clone()),
        waivers_toml: Set(files.waivers.1.clone()),
        digest: Set(digest),
        ..Default::default()
    })
    .exec(&txn)
    .await?
    .last_insert_id;
    series::Entity::delete_many().exec(&txn).await?;
    waiver_rules::Entity::delete_many().exec(&txn).await?;
    fees::Entity::delete_many().exec(&txn).await?;
    agencies::Entity::delete_many().exec(&txn).await?;
    if !reference.agencies.is_empty() {
        agencies::Entity::insert_many(reference.agencies.values().map(|a| agencies::ActiveModel {
            code: Set(a.code.clone()),
            name: Set(a.name.clone()),
            tax_code: Set(a.tax_code.clone()),
            address: Set(a.address.clone()),
            parent: Set(a.parent.clone()),
        }))
        .exec_without_returning(&txn)
        .await?;
    }
    if !reference.series.is_empty() {
        series::Entity::insert_many(reference.series.iter().map(|s| series::ActiveModel {
            agency: Set(s.agency.clone()),
            template: Set(s.template.clone()),
            letters: Set(s.letters.clone()),
            kinds: Set(s.kinds.iter().map(|k| k.code().to_string()).collect()),
            // The name of the newest version of the form (a listing column only).
            title: Set(s.forms.latest().map(|f| f.name.clone()).unwrap_or_default()),
        }))
        .exec_without_returning(&txn)
        .await?;
    }
    if !reference.fees.is_empty() {
        fees::Entity::insert_many(reference.fees.values().map(|f| fees::ActiveModel {
            code: Set(f.code.clone()),
            name: Set(f.name.clone()),
            kind: Set(f.kind.code().to_string()),
            base_amount: Set(f.base_amount.dong()),
            authority: Set(f.authority.clone()),
        }))
        .exec_without_returning(&txn)
        .await?;
    }
    if !rules.rules.is_empty() {
        waiver_rules::Entity::insert_many(rules.rules.iter().map(|r| waiver_rules::ActiveModel {
            id: Set(r.id.clone()),
            document_number: Set(r.legal.document_number.clone()),
            issuing_body: Set(r.legal.issuing_body.clone()),
            valid_from: Set(r.valid_from),
            valid_until: Set(r.valid_until),
            priority: Set(r.priority),
            definition: Set(serde_json::json!({
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
            })),
        }))
        .exec_without_returning(&txn)
        .await?;
    }
    crate::audit::record(
        &txn,
        crate::audit::Entry {
            actor,
            action: "reference.load",
            target: &format!("reference version {version}"),
            reason: None,
            details: serde_json::json!({"agencies": reference.agencies.len(), "series": reference.series.len(), "fees": reference.fees.len(), "rules": rules.rules.len()}),
        },
    )
    .await?;
    txn.commit().await?;
    Ok((version, true))
}

/// Id of the newest version, if any.
pub async fn latest_version<C: ConnectionTrait>(db: &C) -> Result<Option<i64>, DbErr> {
    versions::Entity::find()
        .select_only()
        .column_as(versions::Column::Id.max(), "id")
        .into_tuple::<Option<i64>>()
        .one(db)
        .await
        .map(Option::flatten)
}

/// Loads and parses the newest version. Stored files were valid when loaded; they are parsed
/// again with the running code so every service applies exactly the same rules.
pub async fn load_latest<C: ConnectionTrait>(db: &C) -> Result<Option<LoadedReference>, LoadError> {
    let newest: Option<(i64, String, String, String)> = versions::Entity::find()
        .select_only()
        .columns([
            versions::Column::Id,
            versions::Column::AgenciesToml,
            versions::Column::FeesToml,
            versions::Column::WaiversToml,
        ])
        .order_by_desc(versions::Column::Id)
        .into_tuple()
        .one(db)
        .await?;
    let Some((version, agencies, fees, waivers)) = newest else {
        return Ok(None);
    };
    let files = ReferenceFiles {
        agencies: (format!("reference v{version} agencies.toml"), agencies),
        fees: (format!("reference v{version} fees.toml"), fees),
        waivers: (format!("reference v{version} waivers.toml"), waivers),
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
