//! Who signs for an agency, checked before every use.
//!
//! The signers (`FEEPAY_SIGNERS_DIR`: PKCS#11 token configurations and PKCS#12 files,
//! see `feepay_runtime::pki::signers`) are reloaded when the directory changes, so adding
//! a key or a new certificate needs no restart. For each receipt the collector's signers
//! are checked at the signing time — validity, key usage, the collector's tax code, the
//! chain to the trust anchors (`FEEPAY_TRUST_ANCHORS`) — and the newest one that passes
//! signs. A certificate on the revocation list (`certificate_revocations`, read before
//! every batch) signs nothing from its revocation time on. An agency with no certificate of its own may sign with an ancestor's when that
//! certificate names the agency's own tax code (a desk of the body that collects). When
//! none passes, the payment is parked with every reason.

use chrono::{DateTime, Utc};
use feepay_domain::reference::ReferenceData;
use feepay_runtime::parking::ParkReason;
use feepay_runtime::pki::registry::Revocation;
use feepay_runtime::pki::signers::{AgencySigner, SignerSet};
use feepay_runtime::pki::{check_use, TrustAnchors};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// How long a certificate chain verification is reused (validity, key usage and the tax
/// code are checked at every signature).
const CHAIN_CHECK_TTL: Duration = Duration::from_secs(60);

/// Chain verdicts by certificate fingerprint, with when they were reached.
type ChainCache = HashMap<String, (Instant, Result<(), String>)>;

/// The signers in use and the trust anchors they are checked against.
pub struct Signing {
    dir: Option<PathBuf>,
    sessions: usize,
    trust: TrustAnchors,
    state: RwLock<(Option<SystemTime>, Arc<SignerSet>)>,
    chains: Mutex<ChainCache>,
    revoked: RwLock<Arc<HashMap<String, Revocation>>>,
}

impl Signing {
    /// Signers that never change (tests, tools).
    pub fn fixed(set: SignerSet, trust: TrustAnchors) -> Self {
        Signing {
            dir: None,
            sessions: 1,
            trust,
            state: RwLock::new((None, Arc::new(set))),
            chains: Mutex::new(HashMap::new()),
            revoked: RwLock::default(),
        }
    }

    /// The signers of a directory, reloaded by [`Signing::refresh`] when it changes.
    /// `sessions`: PKCS#11 sessions per token signer (signing runs on that many threads).
    pub fn watching(dir: &Path, trust: TrustAnchors, sessions: usize) -> anyhow::Result<Self> {
        let stamp = Self::stamp(dir);
        let set = SignerSet::load_dir(dir, sessions).map_err(anyhow::Error::msg)?;
        Ok(Signing {
            dir: Some(dir.to_path_buf()),
            sessions,
            trust,
            state: RwLock::new((stamp, Arc::new(set))),
            chains: Mutex::new(HashMap::new()),
            revoked: RwLock::default(),
        })
    }

    fn stamp(dir: &Path) -> Option<SystemTime> {
        std::fs::metadata(dir).and_then(|m| m.modified()).ok()
    }

    pub fn current(&self) -> Arc<SignerSet> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).1.clone()
    }

    pub fn trust(&self) -> &TrustAnchors {
        &self.trust
    }

    /// Reloads the directory when it changed; returns the new set then.
    pub fn refresh(&self) -> Option<Arc<SignerSet>> {
        let dir = self.dir.as_ref()?;
        let stamp = Self::stamp(dir);
        if stamp == self.state.read().unwrap_or_else(|e| e.into_inner()).0 {
            return None;
        }
        match SignerSet::load_dir(dir, self.sessions) {
            Ok(set) => {
                let set = Arc::new(set);
                *self.state.write().unwrap_or_else(|e| e.into_inner()) = (stamp, set.clone());
                tracing::info!(dir = %dir.display(), signers = set.all().count(), "signers reloaded");
                Some(set)
            }
            Err(e) => {
                tracing::error!(dir = %dir.display(), error = %e, "signers changed but do not load; keeping those in use");
                None
            }
        }
    }

    /// Forgets when the directory was last read, so the next [`Signing::refresh`] reads
    /// it again (the certificates could not be registered).
    pub fn invalidate(&self) {
        self.state.write().unwrap_or_else(|e| e.into_inner()).0 = None;
    }

    /// Replaces the revocation list (read from `certificate_revocations`).
    pub fn set_revocations(&self, list: HashMap<String, Revocation>) {
        *self.revoked.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(list);
    }

    /// Why `s` may not sign at `at`, when it is revoked by then.
    fn revoked_at(&self, s: &AgencySigner, at: DateTime<Utc>) -> Option<String> {
        let list = self.revoked.read().unwrap_or_else(|e| e.into_inner()).clone();
        let r = list.get(&s.info.fingerprint).filter(|r| r.covers(at))?;
        Some(format!(
            "certificate {} was revoked from {} ({}); load a new one (receiptctl keys) and retry",
            s.info.serial,
            feepay_domain::receipt::rfc3339(r.revoked_at),
            r.reason
        ))
    }

    fn chain_ok(&self, s: &AgencySigner, at: DateTime<Utc>) -> Result<(), String> {
        let mut cache = self.chains.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((when, result)) = cache.get(&s.info.fingerprint) {
            if when.elapsed() < CHAIN_CHECK_TTL {
                return result.clone();
            }
        }
        let result = self
            .trust
            .verify_chain(s.chain(), at)
            .map_err(|e| format!("certificate {} does not chain to a trusted CA: {e}", s.info.serial));
        cache.insert(s.info.fingerprint.clone(), (Instant::now(), result.clone()));
        result
    }

    /// The signer of an agency's receipts at `at`, or why there is none.
    pub fn signer_for(
        &self,
        reference: &ReferenceData,
        agency: &str,
        at: DateTime<Utc>,
    ) -> Result<Arc<AgencySigner>, ParkReason> {
        let set = self.current();
        let tax_code = reference.agencies.get(agency).map(|a| a.tax_code.clone()).unwrap_or_default();
        // The agency's own signers, else an ancestor's that name the agency's tax code.
        let mut candidates: Vec<&Arc<AgencySigner>> = set.for_agency(agency).iter().collect();
        let mut cur = reference.agencies.get(agency).and_then(|a| a.parent.clone());
        let mut steps = 0;
        while candidates.is_empty() && steps <= reference.agencies.len() {
            let Some(code) = cur else { break };
            candidates.extend(set.for_agency(&code).iter().filter(|s| {
                s.info.tax_code.as_deref().is_some_and(|t| feepay_runtime::pki::same_tax_code(t, &tax_code))
            }));
            cur = reference.agencies.get(&code).and_then(|a| a.parent.clone());
            steps += 1;
        }
        let loaded = !candidates.is_empty();
        let mut problems: Vec<String> = set.problems(agency).to_vec();
        let mut usable: Vec<&Arc<AgencySigner>> = Vec::new();
        for s in candidates {
            let checked = match self.revoked_at(s, at) {
                Some(why) => Err(why),
                None => check_use(&s.info, at, &tax_code).map_or_else(|| self.chain_ok(s, at), Err),
            };
            match checked {
                Ok(()) => usable.push(s),
                Err(p) => problems.push(format!("{}: {p}", s.source)),
            }
        }
        if let Some(best) = usable.into_iter().max_by_key(|s| s.info.not_before) {
            return Ok(best.clone());
        }
        if !loaded {
            let why = if problems.is_empty() { String::new() } else { format!(" ({})", problems.join("; ")) };
            Err(ParkReason::new(
                "no_signing_key",
                format!("agency {agency} has no usable signing key{why}; add one (receiptctl keys) and retry"),
            ))
        } else {
            Err(ParkReason::new(
                "certificate_invalid",
                format!("no usable certificate for agency {agency}: {}", problems.join("; ")),
            ))
        }
    }
}

/// Why a payment (or tax document) waits when its signer failed: a signer that cannot be
/// reached now (`signer_unavailable`) is tried again by the issuer itself; a refusal
/// (`no_signing_key`) waits for a fix and an operator's retry.
pub fn sign_failure(source: &str, e: &feepay_domain::receipt::xmldsig::SignError) -> ParkReason {
    let code = if e.transient { feepay_runtime::parking::SIGNER_UNAVAILABLE } else { "no_signing_key" };
    ParkReason::new(code, format!("signing with {source} failed: {}", e.detail))
}
