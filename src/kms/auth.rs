//! Credentials for a key service: files that must be mode 0600 (or
//! stricter), a token read from one, or an AppRole login with a role id and a
//! secret id read from two. Tokens live in zeroized buffers and appear in no
//! message, log or listing.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::http::{Http, Method};
use super::KmsError;
use crate::crypto::SecretBytes;
use crate::vault::ServiceAuth;

/// Longest credential file read.
const MAX_CREDENTIAL: u64 = 16 * 1024;

/// Reads a credential file: a regular file of mode 0600 or stricter (else
/// refused, naming the file and its mode), one line, not empty. The message
/// of an error never holds the file's content.
pub(crate) fn read_credential(path: &Path, what: &str) -> Result<SecretBytes, KmsError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| KmsError::Config(format!("cannot read {what} {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(KmsError::Config(format!(
            "{what} {} is not a regular file",
            path.display()
        )));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KmsError::Config(format!(
            "{what} {} has mode {mode:04o}: credential files must be readable by their owner only (chmod 600 {})",
            path.display(),
            path.display()
        )));
    }
    if meta.len() > MAX_CREDENTIAL {
        return Err(KmsError::Config(format!(
            "{what} {} is larger than {MAX_CREDENTIAL} bytes",
            path.display()
        )));
    }
    let raw =
        Zeroizing::new(std::fs::read(path).map_err(|e| {
            KmsError::Config(format!("cannot read {what} {}: {e}", path.display()))
        })?);
    let text: &[u8] = raw.trim_ascii();
    if text.is_empty() {
        return Err(KmsError::Config(format!(
            "{what} {} is empty",
            path.display()
        )));
    }
    if text.iter().any(|b| !b.is_ascii_graphic()) {
        return Err(KmsError::Config(format!(
            "{what} {} must hold one line of printable characters",
            path.display()
        )));
    }
    Ok(SecretBytes::new(text.to_vec()))
}

/// A token in use and what is known of it.
struct Session {
    token: Arc<SecretBytes>,
    /// When a new login is due (half the token's lifetime); `None` for a
    /// token read from a file (re-read at every fresh request).
    renew_at: Option<Instant>,
    /// A service token made by a login of ours, revoked when replaced.
    revocable: bool,
}

/// How one key's client authenticates.
pub(crate) struct Auth {
    method: ServiceAuth,
    session: Mutex<Option<Session>>,
}

#[derive(serde::Deserialize)]
struct LoginReply {
    auth: LoginAuth,
}

#[derive(serde::Deserialize)]
struct LoginAuth {
    client_token: String,
    #[serde(default)]
    lease_duration: u64,
    #[serde(default)]
    token_type: Option<String>,
}

impl Auth {
    /// The authentication described by `method`.
    pub fn new(method: ServiceAuth) -> Auth {
        Auth {
            method,
            session: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Session>> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A token to use. With `fresh`, credentials are read and used again
    /// (the token file re-read, a new AppRole login made), which is what
    /// proves that this machine is still allowed: a token stays valid after
    /// its role or secret id is revoked.
    pub fn token(
        &self,
        http: &Http,
        fresh: bool,
        budget: Duration,
    ) -> Result<Arc<SecretBytes>, KmsError> {
        if !fresh {
            if let Some(s) = self.lock().as_ref() {
                if s.renew_at.is_none_or(|t| Instant::now() < t) {
                    return Ok(s.token.clone());
                }
            }
        }
        let new = match &self.method {
            ServiceAuth::Token { token_file } => Session {
                token: Arc::new(read_credential(token_file, "token file")?),
                renew_at: None,
                revocable: false,
            },
            ServiceAuth::Approle {
                mount,
                role_id_file,
                secret_id_file,
            } => self.login(http, mount, role_id_file, secret_id_file, budget)?,
        };
        let token = new.token.clone();
        let old = self.lock().replace(new);
        if let Some(old) = old.filter(|o| o.revocable && !Arc::ptr_eq(&o.token, &token)) {
            // Best effort: a token left alone expires with its TTL.
            let _ = http.call(
                Method::Post,
                "auth/token/revoke-self",
                Some(&old.token),
                None,
                budget.min(Duration::from_secs(2)),
            );
        }
        Ok(token)
    }

    /// Forgets the token in use (after the service refused it).
    pub fn forget(&self) {
        self.lock().take();
    }

    fn login(
        &self,
        http: &Http,
        mount: &str,
        role_id_file: &Path,
        secret_id_file: &Path,
        budget: Duration,
    ) -> Result<Session, KmsError> {
        let role = read_credential(role_id_file, "role id file")?;
        let secret = read_credential(secret_id_file, "secret id file")?;
        let body =
            super::http::json_object(&[("role_id", role.expose()), ("secret_id", secret.expose())]);
        let reply = http.call(
            Method::Post,
            &format!("auth/{mount}/login"),
            None,
            Some(&body),
            budget,
        )?;
        if !(200..300).contains(&reply.status) {
            return Err(KmsError::Refused {
                address: reply.address.clone(),
                what: format!("AppRole login at auth/{mount}"),
                why: reply.errors(),
            });
        }
        let parsed: LoginReply =
            serde_json::from_slice(&reply.body).map_err(|_| KmsError::Garbage {
                address: reply.address.clone(),
                what: format!("the AppRole login at auth/{mount} did not return a token"),
            })?;
        let auth = parsed.auth;
        let token = Zeroizing::new(auth.client_token);
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(KmsError::Garbage {
                address: reply.address.clone(),
                what: format!("the AppRole login at auth/{mount} returned an unusable token"),
            });
        }
        let renew_at = (auth.lease_duration > 0)
            .then(|| Instant::now() + Duration::from_secs(auth.lease_duration / 2));
        Ok(Session {
            token: Arc::new(SecretBytes::new(token.as_bytes().to_vec())),
            renew_at,
            revocable: auth.token_type.as_deref() != Some("batch"),
        })
    }
}
