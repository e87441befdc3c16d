//! The configuration: `lb.toml` ([`schema`]) or keepalived.conf ([`keepalived`]), checked by
//! [`validate`] into the [`crate::model::Model`] the daemon runs.

pub mod address;
pub mod diagnostic;
pub mod fuzz;
pub mod host;
pub mod keepalived;
pub mod locate;
pub mod reference;
pub mod schema;
pub mod validate;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
pub(crate) mod test_dir;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use diagnostic::{Diagnostic, Diagnostics, Location};
pub use host::Host;
pub use schema::{Config, DataplaneKind, XdpConfig};
pub use validate::{Origin, Validated};

use crate::config::locate::{KeyLocations, Locate, TomlLocator, line_column};

/// A configuration that could not be read or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error(transparent)]
    Keepalived(#[from] keepalived::ReadError),
    /// Every problem validation found.
    #[error("{diagnostics}")]
    Invalid { diagnostics: Diagnostics },
}

/// A configuration read, checked and modelled, whichever format it was written in.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub validated: Validated,
    pub origin: Origin,
}

/// keepalived.conf by extension (`.conf`) or, failing that, by content: a TOML file has
/// `key = value` or `[table]` lines, keepalived.conf has `keyword {` blocks.
#[must_use]
pub fn detect(path: &Path, text: &str) -> Origin {
    match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => return Origin::LbToml,
        Some("conf") => return Origin::Keepalived,
        _ => {}
    }
    let keepalived_like = text.lines().map(str::trim).any(|l| {
        [
            "global_defs",
            "vrrp_instance",
            "virtual_server",
            "vrrp_script",
            "vrrp_sync_group",
        ]
        .iter()
        .any(|k| l.starts_with(k) && !l.contains('='))
    });
    if keepalived_like {
        Origin::Keepalived
    } else {
        Origin::LbToml
    }
}

/// The host a configuration is validated for, once its XDP interfaces are known.
pub type HostOf<'a> = &'a dyn Fn(&Config) -> Host;

/// Reads `path` in either format, then validates it for the host it runs on (a DR real must
/// be on a network of this host, when the configuration's interfaces exist here).
///
/// # Errors
/// The file cannot be read or parsed, or fails validation.
pub fn load_any(path: &Path) -> Result<Loaded, ConfigError> {
    load_any_as(path, None)
}

/// [`load_any`], with the data plane `dataplane` in place of the file's choice when given
/// (`--dataplane`: a keepalived.conf runs on IPVS as keepalived runs it, or on XDP).
///
/// # Errors
/// As [`load_any`].
pub fn load_any_as(path: &Path, dataplane: Option<DataplaneKind>) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let host: HostOf<'_> = &|config| Host::current(&config.xdp.interfaces);
    match detect(path, &text) {
        Origin::LbToml => Config::load_text_on(path, &text, host, dataplane),
        Origin::Keepalived => {
            let tree = keepalived::parse(path, &text)?;
            from_keepalived_on(path, &tree, host, dataplane)
        }
    }
}

/// Maps and validates a keepalived.conf tree; the mapping's warnings come first.
///
/// # Errors
/// A keyword's value does not fit, or validation fails.
pub fn from_keepalived(path: &Path, tree: &keepalived::Tree) -> Result<Loaded, ConfigError> {
    from_keepalived_on(path, tree, &|_| Host::default(), None)
}

/// [`from_keepalived`] for the host `host` gives.
///
/// # Errors
/// A keyword's value does not fit, or validation fails.
pub fn from_keepalived_on(
    path: &Path,
    tree: &keepalived::Tree,
    host: HostOf<'_>,
    dataplane: Option<DataplaneKind>,
) -> Result<Loaded, ConfigError> {
    // Warnings go with errors too: the parser's, then the import's, then validation's.
    let with_tree = |mut d: Diagnostics, before: &[Diagnostic]| {
        d.1.splice(0..0, before.iter().cloned());
        ConfigError::Invalid { diagnostics: d }
    };
    let mut imported = keepalived::import(path, tree).map_err(|d| with_tree(d, &tree.warnings))?;
    if let Some(d) = dataplane {
        imported.config.dataplane = d;
    }
    if imported.config.dataplane == DataplaneKind::Ipvs {
        // The interfaces import inferred for an XDP program (the VRRP ones) mean nothing.
        imported.config.xdp = XdpConfig::default();
    }
    let mut validated = validate::validate_on(
        &imported.config,
        &imported.locations,
        Origin::Keepalived,
        &host(&imported.config),
    )
    .map_err(|d| {
        let before: Vec<Diagnostic> = tree
            .warnings
            .iter()
            .chain(&imported.warnings)
            .cloned()
            .collect();
        with_tree(d, &before)
    })?;
    let mut warnings = tree.warnings.clone();
    warnings.extend(imported.warnings);
    warnings.append(&mut validated.warnings);
    validated.warnings = warnings;
    Ok(Loaded {
        config: imported.config,
        validated,
        origin: Origin::Keepalived,
    })
}

impl Config {
    /// Reads and validates the `lb.toml` at `path`.
    ///
    /// # Errors
    /// The file cannot be read, is not valid TOML for this schema, or fails validation.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates `text`; `path` is only used in messages.
    ///
    /// # Errors
    /// `text` is not valid TOML for this schema, or fails validation.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        Self::load_text(path, text).map(|l| l.config)
    }

    /// Parses, validates and models `text`.
    ///
    /// # Errors
    /// `text` is not valid TOML for this schema, or fails validation.
    pub fn load_text(path: &Path, text: &str) -> Result<Loaded, ConfigError> {
        Self::load_text_on(path, text, &|_| Host::default(), None)
    }

    /// [`Config::load_text`] for the host `host` gives.
    ///
    /// # Errors
    /// `text` is not valid TOML for this schema, or fails validation.
    pub fn load_text_on(
        path: &Path,
        text: &str,
        host: HostOf<'_>,
        dataplane: Option<DataplaneKind>,
    ) -> Result<Loaded, ConfigError> {
        let mut config: Self = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map_or((0, 0), |span| line_column(text, span.start));
            ConfigError::Parse {
                path: path.to_owned(),
                line,
                column,
                message: e.message().trim_end().to_owned(),
            }
        })?;
        if let Some(d) = dataplane {
            config.dataplane = d;
        }
        let locator = TomlLocator {
            file: Arc::from(path),
            text: text.to_owned(),
        };
        let validated = validate::validate_on(
            &config,
            &locator as &dyn Locate,
            Origin::LbToml,
            &host(&config),
        )
        .map_err(|diagnostics| ConfigError::Invalid { diagnostics })?;
        Ok(Loaded {
            config,
            validated,
            origin: Origin::LbToml,
        })
    }

    /// This configuration as `lb.toml` text.
    ///
    /// # Errors
    /// A value TOML cannot hold (a non-finite float).
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }
}

/// Where keepalived.conf's keys were written, for validation messages.
pub type KeepalivedLocations = KeyLocations;
