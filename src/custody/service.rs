//! Keys held by a key service (OpenBao / Vault Transit, see
//! [`crate::kms`]): the wrapped DEK is the service's ciphertext
//! (`vault:vN:…`), the binding is the derivation context. Only this file
//! turns the service's errors into custody errors.

use std::sync::Arc;
use std::time::Duration;

use super::{Binding, CustodyError, KeyHolder};
use crate::crypto::Key64;
use crate::kms::{KmsError, Service};
use crate::vault::ExternalKey;

/// A key held by a key service.
pub(super) struct Remote {
    name: String,
    service: Arc<Service>,
}

impl Remote {
    pub(super) fn new(name: &str, spec: &ExternalKey) -> Result<Self, CustodyError> {
        let service = crate::kms::service(spec).map_err(|e| error(name, e))?;
        Ok(Remote {
            name: name.to_string(),
            service,
        })
    }
}

/// The custody error for a service error about key `name`.
fn error(name: &str, e: KmsError) -> CustodyError {
    match e {
        KmsError::Unreachable { .. } | KmsError::Garbage { .. } => CustodyError::Unreachable {
            key: name.to_string(),
            cause: e.to_string(),
        },
        KmsError::Refused { .. } | KmsError::NoKey { .. } => CustodyError::Refused {
            key: name.to_string(),
            why: format!("vault key {name} is refused: {e}"),
        },
        KmsError::NotUnwrapped { .. } => CustodyError::NotUnwrapped {
            key: name.to_string(),
            why: e.to_string(),
        },
        KmsError::Config(what) => CustodyError::Invalid(format!("vault key {name}: {what}")),
    }
}

impl KeyHolder for Remote {
    fn name(&self) -> &str {
        &self.name
    }

    fn location(&self) -> String {
        self.service.location()
    }

    fn is_external(&self) -> bool {
        true
    }

    fn newest(&self) -> Result<u32, CustodyError> {
        let info = self.service.key_info().map_err(|e| error(&self.name, e))?;
        self.service
            .usable(&info)
            .map_err(|e| error(&self.name, e))?;
        if let Some(why) = info.refuses(info.latest_version) {
            return Err(CustodyError::Refused {
                key: self.name.clone(),
                why: format!(
                    "vault key {} is refused by {}: {why}",
                    self.name,
                    self.location()
                ),
            });
        }
        Ok(info.latest_version)
    }

    fn wrap(&self, dek: &Key64, at: &Binding<'_>) -> Result<(u32, String), CustodyError> {
        // New DEKs only go to a key that binds them (derived) and works.
        self.newest()?;
        self.service
            .encrypt(dek, &at.context(&self.name))
            .map_err(|e| error(&self.name, e))
    }

    fn unwrap(&self, version: u32, wrapped: &str, at: &Binding<'_>) -> Result<Key64, CustodyError> {
        self.service
            .decrypt(version, wrapped, &at.context(&self.name))
            .map_err(|e| error(&self.name, e))
    }

    fn rewrap(
        &self,
        version: u32,
        wrapped: &str,
        at: &Binding<'_>,
    ) -> Result<(u32, String), CustodyError> {
        self.service
            .rewrap(version, wrapped, &at.context(&self.name))
            .map_err(|e| error(&self.name, e))
    }

    fn check(
        &self,
        versions: &[u32],
        budget: Duration,
    ) -> Result<Vec<Option<String>>, CustodyError> {
        let answers = self
            .service
            .check(versions, budget)
            .map_err(|e| error(&self.name, e))?;
        Ok(answers
            .into_iter()
            .map(|a| {
                a.map(|why| {
                    format!(
                        "vault key {} is refused by {}: {why}",
                        self.name,
                        self.location()
                    )
                })
            })
            .collect())
    }
}
