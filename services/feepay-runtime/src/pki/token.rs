//! Keys in a PKCS#11 token or HSM: signing happens in the token, over a few sessions
//! (a session serves one thread at a time).
//!
//! A token can restart, be re-inserted or drop its sessions (an HSM failing over, a network
//! HSM's connection cut): every session handle is then invalid. A signature that fails
//! that way reopens its session (finding the token again by label, logging in, finding the
//! key) and is tried once more; if the token cannot be reached at all the error is
//! [`SignError::transient`], so the issuer parks the payment as `signer_unavailable` and
//! tries it again by itself with a growing delay, instead of parking it for good as having
//! no signing key. Any other refusal (wrong mechanism, key not allowed to sign) is not
//! transient.

use super::signers::module_handle;
use super::CertInfo;
use crate::settings::Secret;
use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use feepay_domain::receipt::xmldsig::{SignError, SignatureAlgorithm, Signer};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// How to reach a key in a token.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub module: Option<PathBuf>,
    /// Token label.
    pub token: String,
    /// Label of the private key (and of its certificate object on the token).
    pub key: String,
    /// File holding the user PIN.
    pub pin_file: PathBuf,
    /// The certificate (PEM or DER) when it is not on the token.
    pub certificate: Option<PathBuf>,
}

/// What it takes to open a session on the key again.
struct Access {
    pkcs11: Pkcs11,
    token: String,
    key: String,
    pin: Secret,
}

impl Access {
    /// The slot holding the token now (its id may change when it comes back).
    fn slot(&self) -> Result<Slot, String> {
        self.pkcs11
            .get_slots_with_token()
            .map_err(|e| format!("listing the slots: {e}"))?
            .into_iter()
            .find(|s| self.pkcs11.get_token_info(*s).map(|t| t.label().trim() == self.token).unwrap_or(false))
            .ok_or_else(|| format!("no token labelled {:?}", self.token))
    }

    /// A logged-in session and the key's handle in it.
    fn open(&self) -> Result<(Session, ObjectHandle), OpenError> {
        let slot = self.slot().map_err(OpenError::Unreachable)?;
        let session =
            self.pkcs11.open_ro_session(slot).map_err(|e| OpenError::Unreachable(format!("opening a session: {e}")))?;
        match session.login(UserType::User, Some(&AuthPin::new(self.pin.expose().to_string()))) {
            Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) if lost(&e) => return Err(OpenError::Unreachable(format!("logging in: {e}"))),
            Err(e) => return Err(OpenError::Refused(format!("token {:?}: login refused: {e}", self.token))),
        }
        let key = session
            .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY), Attribute::Label(self.key.clone().into())])
            .map_err(|e| OpenError::Unreachable(format!("finding the key: {e}")))?
            .into_iter()
            .next()
            .ok_or_else(|| {
                OpenError::Refused(format!("token {:?} has no private key labelled {:?}", self.token, self.key))
            })?;
        Ok((session, key))
    }
}

enum OpenError {
    /// The token is not there or not answering: it may come back.
    Unreachable(String),
    /// It answers and refuses (PIN, no such key): someone must change something.
    Refused(String),
}

impl OpenError {
    fn message(self) -> String {
        match self {
            OpenError::Unreachable(m) | OpenError::Refused(m) => m,
        }
    }
}

/// Errors that mean the session (or the token behind it) is gone, not that the key
/// refused: reopening may cure them.
fn lost(e: &P11Error) -> bool {
    matches!(
        e,
        P11Error::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::SessionCount
                | RvError::DeviceRemoved
                | RvError::DeviceError
                | RvError::DeviceMemory
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::SlotIdInvalid
                | RvError::UserNotLoggedIn
                | RvError::KeyHandleInvalid
                | RvError::ObjectHandleInvalid
                | RvError::CryptokiNotInitialized
                | RvError::FunctionFailed
                | RvError::GeneralError,
            _
        )
    )
}

/// A key in a PKCS#11 token.
pub struct TokenSigner {
    access: Access,
    /// `None` once a session was found lost: reopened on next use.
    sessions: Vec<Mutex<Option<(Session, ObjectHandle)>>>,
    next: AtomicUsize,
    certs: Vec<Vec<u8>>,
    info: CertInfo,
}

impl TokenSigner {
    /// Opens `sessions` sessions on the token, logs in, finds the key and its certificate.
    pub fn open(config: &TokenConfig, base: &Path, sessions: usize) -> Result<Self, String> {
        let module_path = config
            .module
            .clone()
            .unwrap_or_else(|| PathBuf::from(crate::settings::get(&crate::settings::catalog::PKCS11_MODULE)));
        let pkcs11 = module_handle(&module_path)?;
        let pin_path =
            if config.pin_file.is_absolute() { config.pin_file.clone() } else { base.join(&config.pin_file) };
        let pin = std::fs::read_to_string(&pin_path).map_err(|e| format!("PIN file {}: {e}", pin_path.display()))?;
        let access =
            Access { pkcs11, token: config.token.clone(), key: config.key.clone(), pin: Secret::new(pin.trim()) };
        let mut opened = Vec::with_capacity(sessions.max(1));
        for _ in 0..sessions.max(1) {
            let (session, key) =
                access.open().map_err(|e| format!("{} ({}): {}", config.token, module_path.display(), e.message()))?;
            opened.push(Mutex::new(Some((session, key))));
        }
        let certs = match &config.certificate {
            Some(path) => {
                let path = if path.is_absolute() { path.clone() } else { base.join(path) };
                let bytes = std::fs::read(&path).map_err(|e| format!("certificate {}: {e}", path.display()))?;
                let cert = openssl::x509::X509::from_pem(&bytes)
                    .or_else(|_| openssl::x509::X509::from_der(&bytes))
                    .map_err(|e| format!("certificate {}: {e}", path.display()))?;
                vec![cert.to_der().map_err(|e| e.to_string())?]
            }
            None => {
                let guard = opened[0].lock().unwrap_or_else(|e| e.into_inner());
                let (session, _) = guard.as_ref().ok_or("no session")?;
                let handle = session
                    .find_objects(&[
                        Attribute::Class(ObjectClass::CERTIFICATE),
                        Attribute::Label(config.key.clone().into()),
                    ])
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .next()
                    .ok_or_else(|| format!("token {:?} has no certificate labelled {:?}", config.token, config.key))?;
                match session.get_attributes(handle, &[AttributeType::Value]).map_err(|e| e.to_string())?.pop() {
                    Some(Attribute::Value(der)) => vec![der],
                    _ => return Err("the token's certificate object has no value".into()),
                }
            }
        };
        let info = CertInfo::parse(&certs[0])?;
        Ok(TokenSigner { access, sessions: opened, next: AtomicUsize::new(0), certs, info })
    }

    pub fn info(&self) -> &CertInfo {
        &self.info
    }
}

impl Signer for TokenSigner {
    fn algorithm(&self) -> SignatureAlgorithm {
        self.info.algorithm()
    }
    fn certificates(&self) -> &[Vec<u8>] {
        &self.certs
    }
    fn subject(&self) -> &str {
        &self.info.subject
    }
    fn fingerprint(&self) -> &str {
        &self.info.fingerprint
    }
    fn sign(&self, data: &[u8]) -> Result<Vec<u8>, SignError> {
        let mechanism = match self.info.algorithm() {
            SignatureAlgorithm::RsaSha256 => Mechanism::Sha256RsaPkcs,
            SignatureAlgorithm::EcdsaSha256 => Mechanism::EcdsaSha256,
        };
        // A free session if there is one, else wait on the next in turn.
        let n = self.sessions.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut guard = (0..n)
            .find_map(|i| self.sessions[(start + i) % n].try_lock().ok())
            .unwrap_or_else(|| self.sessions[start % n].lock().unwrap_or_else(|e| e.into_inner()));
        let token = &self.access.token;
        for attempt in 0..2 {
            if guard.is_none() {
                match self.access.open() {
                    Ok(s) => {
                        tracing::info!(token = %token, "PKCS#11 session reopened");
                        *guard = Some(s);
                    }
                    Err(OpenError::Unreachable(e)) => {
                        return Err(SignError::transient(format!("token {token:?} unavailable: {e}")))
                    }
                    Err(OpenError::Refused(e)) => return Err(SignError::new(e)),
                }
            }
            let Some((session, key)) = guard.as_ref() else { continue };
            match session.sign(&mechanism, *key, data) {
                Ok(sig) => return Ok(sig),
                Err(e) if lost(&e) => {
                    tracing::warn!(token = %token, error = %e, attempt, "PKCS#11 session lost; reopening it");
                    *guard = None;
                }
                Err(e) => return Err(SignError::new(format!("token: {e}"))),
            }
        }
        Err(SignError::transient(format!("token {token:?}: the session was lost again right after reopening")))
    }
}
