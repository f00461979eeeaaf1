//! Administering a key where it is held: creating an entry for a key held
//! by a service, rotating, disabling and enabling, the rotation period, and
//! the state a service reports. For a key in the vault file these change
//! the vault in memory (the caller saves it); for a key held by a service
//! they act in the service, and only when the vault's entry says strata may
//! administer it (`manage`), else they say where to do it.

use super::CustodyError;
use crate::kms::{self, KmsError};
use crate::vault::{ExternalKey, Vault, VaultError};

fn vault_error(e: VaultError) -> CustodyError {
    CustodyError::Invalid(e.to_string())
}

fn kms_error(name: &str, e: KmsError) -> CustodyError {
    if e.is_unreachable() {
        CustodyError::Unreachable {
            key: name.to_string(),
            cause: e.to_string(),
        }
    } else {
        match e {
            KmsError::Refused { .. } | KmsError::NoKey { .. } => CustodyError::Refused {
                key: name.to_string(),
                why: format!("vault key {name}: {e}"),
            },
            other => CustodyError::Invalid(format!("vault key {name}: {other}")),
        }
    }
}

/// The service description of `name`, if the key is held by one.
fn spec<'v>(vault: &'v Vault, name: &str) -> Result<Option<&'v ExternalKey>, CustodyError> {
    let k = vault.key(name).ok_or_else(|| CustodyError::Missing {
        key: name.to_string(),
        version: None,
    })?;
    Ok(k.service.as_ref())
}

/// The service of a key strata may administer, or why not.
fn managed(
    vault: &Vault,
    name: &str,
    what: &str,
) -> Result<Option<std::sync::Arc<kms::Service>>, CustodyError> {
    let Some(s) = spec(vault, name)? else {
        return Ok(None);
    };
    if !s.manage {
        return Err(CustodyError::Invalid(format!(
            "vault key {name} is held by {} and administered there, not by this vault (its entry was made without --kms-manage): {what} it in the service",
            s.location()
        )));
    }
    kms::service(s).map(Some).map_err(|e| kms_error(name, e))
}

/// Adds key `name` held by the service `spec` to the vault (in memory):
/// with `spec.manage` the key is made in the service if it does not exist
/// yet (derived, aes256-gcm96). The service must answer, and the key must
/// be one strata can use. Returns a line describing it.
pub fn create_external(
    vault: &mut Vault,
    name: &str,
    spec: ExternalKey,
) -> Result<String, CustodyError> {
    if vault.key(name).is_some() {
        return Err(vault_error(VaultError::KeyExists(name.to_string())));
    }
    spec.check().map_err(|what| {
        vault_error(VaultError::BadService {
            name: name.to_string(),
            what,
        })
    })?;
    let svc = kms::service(&spec).map_err(|e| kms_error(name, e))?;
    let info = match svc.key_info() {
        Ok(i) => i,
        Err(KmsError::NoKey { .. }) if spec.manage => {
            svc.create().map_err(|e| kms_error(name, e))?;
            svc.key_info().map_err(|e| kms_error(name, e))?
        }
        Err(e) => return Err(kms_error(name, e)),
    };
    svc.usable(&info).map_err(|e| kms_error(name, e))?;
    let location = spec.location();
    vault.create_external_key(name, spec).map_err(vault_error)?;
    Ok(format!(
        "created key {name} (customer) held by {location}, newest version {}",
        info.latest_version
    ))
}

/// Rotates key `name`: a new version in the vault, or in the service.
/// Returns a line describing the outcome.
pub fn rotate(vault: &mut Vault, name: &str) -> Result<String, CustodyError> {
    match spec(vault, name)? {
        None => {
            let v = vault.rotate_key(name).map_err(vault_error)?;
            Ok(format!("key {name}: version {v} created"))
        }
        Some(s) if !s.manage => {
            // Rotated by whoever administers it; stores given with --store
            // are still moved to the newest version.
            let svc = kms::service(s).map_err(|e| kms_error(name, e))?;
            let info = svc.key_info().map_err(|e| kms_error(name, e))?;
            Ok(format!(
                "key {name} is rotated in the service that holds it ({}); its newest version there is {}",
                s.location(),
                info.latest_version
            ))
        }
        Some(_) => {
            let svc = managed(vault, name, "rotate")?.ok_or_else(|| {
                CustodyError::Invalid(format!("vault key {name} is not held by a service"))
            })?;
            let v = svc.rotate().map_err(|e| kms_error(name, e))?;
            Ok(format!(
                "key {name}: version {v} created in {}",
                svc.location()
            ))
        }
    }
}

/// Enables or disables key `name` (one version with `version`, for a key
/// in the vault). A key held by a service is disabled by a soft delete
/// there and enabled by restoring it. Returns a line describing it.
pub fn set_enabled(
    vault: &mut Vault,
    name: &str,
    version: Option<u32>,
    enabled: bool,
) -> Result<String, CustodyError> {
    let word = if enabled { "enable" } else { "disable" };
    match managed(vault, name, word)? {
        None => {
            vault
                .set_enabled(name, version, enabled)
                .map_err(vault_error)?;
            let what = match version {
                Some(n) => format!("key {name} version {n}"),
                None => format!("every version of key {name}"),
            };
            Ok(format!(
                "{what} {}",
                if enabled {
                    "enabled"
                } else {
                    "disabled (revoked)"
                }
            ))
        }
        Some(_) if version.is_some() => Err(CustodyError::Invalid(format!(
            "vault key {name} is held by a service: versions are retired there by raising the key's min_decryption_version; {word} the whole key with `{word} {name}`"
        ))),
        Some(svc) => {
            if enabled {
                svc.enable()
            } else {
                svc.disable()
            }
            .map_err(|e| kms_error(name, e))?;
            Ok(format!(
                "key {name} {} in {}",
                if enabled {
                    "enabled"
                } else {
                    "disabled (revoked)"
                },
                svc.location()
            ))
        }
    }
}

/// Sets or clears key `name`'s rotation period: the vault's policy, or the
/// service's automatic rotation. Returns a line describing it.
pub fn set_rotation_days(
    vault: &mut Vault,
    name: &str,
    days: Option<u32>,
) -> Result<String, CustodyError> {
    match managed(vault, name, "set the rotation period of")? {
        None => {
            vault.set_rotation_days(name, days).map_err(vault_error)?;
        }
        Some(svc) => svc
            .set_rotation_days(days.unwrap_or(0))
            .map_err(|e| kms_error(name, e))?,
    }
    Ok(match days {
        None => format!("key {name}: no rotation policy"),
        Some(d) => format!("key {name}: rotates when its newest version is {d} days old"),
    })
}

/// What a key service reports about key `name`, for display.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServiceState {
    /// Where the key lives.
    pub location: String,
    /// Its newest version.
    pub latest_version: u32,
    /// Versions below this do not decrypt.
    pub min_decryption_version: u32,
    /// Whether it is disabled (soft-deleted).
    pub disabled: bool,
    /// Automatic rotation period in seconds (0: none).
    pub auto_rotate_secs: u64,
}

/// The service's state of key `name`: `None` for a key in the vault file.
pub fn service_state(vault: &Vault, name: &str) -> Option<Result<ServiceState, CustodyError>> {
    let s = match spec(vault, name) {
        Ok(Some(s)) => s,
        Ok(None) => return None,
        Err(e) => return Some(Err(e)),
    };
    Some(
        kms::service(s)
            .and_then(|svc| svc.key_info())
            .map(|i| ServiceState {
                location: s.location(),
                latest_version: i.latest_version,
                min_decryption_version: i.min_decryption_version,
                disabled: i.soft_deleted,
                auto_rotate_secs: i.auto_rotate_secs,
            })
            .map_err(|e| kms_error(name, e)),
    )
}
