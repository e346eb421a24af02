//! Agency signing keys, read from files (never from the database, never logged).
//!
//! A key file `<AGENCY_CODE>.key` in the keys directory holds two lines:
//! `key_id = "BN.TTPVHCC-2026"` and `secret = "<64 hex characters>"`. An agency without a
//! key of its own signs with the nearest ancestor's key (a province may sign for its
//! communes). `receiptctl keys generate` writes keys for local use.

use feepay_domain::receipt::AgencyKey;
use feepay_domain::reference::ReferenceData;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    key_id: String,
    secret: String,
}

/// Keys by agency code.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: BTreeMap<String, Arc<AgencyKey>>,
}

impl Keyring {
    /// Reads every `*.key` file of a directory.
    pub fn load_dir(dir: &Path) -> anyhow::Result<Self> {
        let mut keys = BTreeMap::new();
        let entries = std::fs::read_dir(dir).map_err(|e| anyhow::anyhow!("keys directory {}: {e}", dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("key") {
                continue;
            }
            let agency = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
            let text = std::fs::read_to_string(&path)?;
            let file: KeyFile =
                toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message()))?;
            let key = AgencyKey::from_secret_hex(&file.key_id, &file.secret)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            keys.insert(agency, Arc::new(key));
        }
        Ok(Keyring { keys })
    }

    pub fn insert(&mut self, agency: &str, key: AgencyKey) {
        self.keys.insert(agency.to_string(), Arc::new(key));
    }

    /// The key that signs for an agency: its own or its nearest ancestor's.
    pub fn for_agency(&self, reference: &ReferenceData, agency: &str) -> Option<Arc<AgencyKey>> {
        let mut cur = Some(agency.to_string());
        let mut steps = 0;
        while let Some(code) = cur {
            if let Some(k) = self.keys.get(&code) {
                return Some(k.clone());
            }
            steps += 1;
            if steps > reference.agencies.len() {
                return None;
            }
            cur = reference.agencies.get(&code).and_then(|a| a.parent.clone());
        }
        None
    }

    /// Agencies with a receipt series but no key to sign with.
    pub fn missing(&self, reference: &ReferenceData) -> Vec<String> {
        let mut v: Vec<String> = reference
            .series
            .iter()
            .map(|s| s.agency.clone())
            .filter(|a| self.for_agency(reference, a).is_none())
            .collect();
        v.dedup();
        v
    }

    /// Public keys as `(agency, key_id, public hex)`.
    pub fn public_keys(&self) -> Vec<(String, String, String)> {
        self.keys.iter().map(|(a, k)| (a.clone(), k.key_id.clone(), k.public_hex())).collect()
    }
}

/// Generates and writes a key `<AGENCY>-<suffix>` for every agency with a receipt series
/// that has no key file yet in `dir`. Returns the agencies and keys made.
pub fn generate_missing(
    dir: &Path,
    reference: &ReferenceData,
    suffix: &str,
) -> std::io::Result<Vec<(std::path::PathBuf, AgencyKey)>> {
    let agencies: std::collections::BTreeSet<&str> = reference.series.iter().map(|s| s.agency.as_str()).collect();
    let mut made = Vec::new();
    for agency in agencies {
        if dir.join(format!("{agency}.key")).exists() {
            continue;
        }
        let key = AgencyKey::generate(&format!("{agency}-{suffix}"), &mut rand::rngs::OsRng);
        let path = write_key_file(dir, agency, &key)?;
        made.push((path, key));
    }
    Ok(made)
}

/// Writes a key file (mode 0600). Refuses to overwrite.
pub fn write_key_file(dir: &Path, agency: &str, key: &AgencyKey) -> std::io::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{agency}.key"));
    let text = format!("key_id = \"{}\"\nsecret = \"{}\"\n", key.key_id, key.secret_hex());
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    opts.open(&path)?.write_all(text.as_bytes())?;
    Ok(path)
}

/// The keys in use, reloaded when their directory changes (a key added for an agency whose
/// payments were parked, a rotated key), so a fix needs no restart.
#[derive(Debug)]
pub struct LiveKeys {
    dir: Option<std::path::PathBuf>,
    state: std::sync::RwLock<(Option<std::time::SystemTime>, Arc<Keyring>)>,
}

impl LiveKeys {
    /// Keys that never change (tests, tools).
    pub fn fixed(ring: Keyring) -> Self {
        LiveKeys { dir: None, state: std::sync::RwLock::new((None, Arc::new(ring))) }
    }

    /// The keys of a directory, reloaded by [`LiveKeys::refresh`] when it changes.
    pub fn watching(dir: &Path) -> anyhow::Result<Self> {
        let stamp = Self::stamp(dir);
        let ring = Keyring::load_dir(dir)?;
        Ok(LiveKeys { dir: Some(dir.to_path_buf()), state: std::sync::RwLock::new((stamp, Arc::new(ring))) })
    }

    fn stamp(dir: &Path) -> Option<std::time::SystemTime> {
        std::fs::metadata(dir).and_then(|m| m.modified()).ok()
    }

    pub fn current(&self) -> Arc<Keyring> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).1.clone()
    }

    /// Reloads the directory when it changed since the last load; returns the new keys
    /// then. A directory that no longer reads keeps the keys in use (and says why).
    pub fn refresh(&self) -> Option<Arc<Keyring>> {
        let dir = self.dir.as_ref()?;
        let stamp = Self::stamp(dir);
        if stamp == self.state.read().unwrap_or_else(|e| e.into_inner()).0 {
            return None;
        }
        match Keyring::load_dir(dir) {
            Ok(ring) => {
                let ring = Arc::new(ring);
                *self.state.write().unwrap_or_else(|e| e.into_inner()) = (stamp, ring.clone());
                tracing::info!(dir = %dir.display(), keys = ring.public_keys().len(), "signing keys reloaded");
                Some(ring)
            }
            Err(e) => {
                tracing::error!(dir = %dir.display(), error = %e, "signing keys changed but do not load; keeping the keys in use");
                None
            }
        }
    }
}
