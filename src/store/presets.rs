//! The recommended layer combinations (`strata init --preset NAME`).

use crate::store::StorageMode;

/// A preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// SSE with a platform-managed key.
    General,
    /// SSE with a customer-managed key.
    Compliance,
    /// Guest encryption (ADE) plus SSE with a platform key.
    OsPolicy,
    /// Encryption at host plus SSE with a platform key.
    Full,
    /// One scope's customer key over all disks.
    Fleet,
    /// Guest + SSE double (CMK + PMK) + host, in a scope.
    Max,
}

/// What a preset turns on.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Guest layer on os and data.
    pub guest: bool,
    /// Host encryption.
    pub host: bool,
    /// Storage keying of os and data.
    pub storage: StorageMode,
    /// Scope name and its customer key.
    pub scope: Option<(&'static str, &'static str)>,
    /// Vault key wrapping guest DEKs.
    pub guest_key: &'static str,
    /// Vault key wrapping storage CMK DEKs outside a scope.
    pub cmk: &'static str,
}

impl Preset {
    /// All presets, in documentation order.
    pub const ALL: [Preset; 6] = [
        Preset::General,
        Preset::Compliance,
        Preset::OsPolicy,
        Preset::Full,
        Preset::Fleet,
        Preset::Max,
    ];

    /// The preset's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Preset::General => "general",
            Preset::Compliance => "compliance",
            Preset::OsPolicy => "os-policy",
            Preset::Full => "full",
            Preset::Fleet => "fleet",
            Preset::Max => "max",
        }
    }

    /// The layers it turns on.
    pub fn plan(self) -> Plan {
        let base = Plan {
            guest: false,
            host: false,
            storage: StorageMode::Platform,
            scope: None,
            guest_key: "guest-kek",
            cmk: "cmk",
        };
        match self {
            Preset::General => base,
            Preset::Compliance => Plan {
                storage: StorageMode::Customer,
                ..base
            },
            Preset::OsPolicy => Plan {
                guest: true,
                ..base
            },
            Preset::Full => Plan { host: true, ..base },
            Preset::Fleet => Plan {
                storage: StorageMode::Customer,
                scope: Some(("fleet", "fleet-cmk")),
                ..base
            },
            Preset::Max => Plan {
                guest: true,
                host: true,
                storage: StorageMode::Double,
                scope: Some(("max", "max-cmk")),
                ..base
            },
        }
    }
}
