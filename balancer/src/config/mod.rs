//! `lb.toml`: parsing and validation.
//!
//! Only the data-plane attachment keys exist so far; the rest of keepalived.conf's vocabulary
//! arrives with the configuration issue.

pub mod diagnostic;
pub mod keepalived;
#[cfg(test)]
mod test_dir;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::dataplane::xdp::AttachMode;

/// The whole `lb.toml`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Which data plane forwards packets. Only `"xdp"` exists so far; `"ipvs"` will select the
    /// kernel IPVS backend.
    #[serde(default)]
    pub dataplane: DataplaneKind,
    /// Where and how the XDP program attaches.
    pub xdp: XdpConfig,
}

/// The forwarding engine.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DataplaneKind {
    /// The balancer's own XDP program.
    #[default]
    Xdp,
}

/// `[xdp]`: the interfaces the XDP program attaches to.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct XdpConfig {
    /// Interface names, e.g. `["eth0", "eth1"]`. At least one.
    pub interfaces: Vec<String>,
    /// `"auto"` (driver mode where the driver supports it, generic otherwise), `"driver"` or
    /// `"generic"`. Default `"auto"`.
    #[serde(default)]
    pub mode: AttachMode,
}

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
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        message: String,
    },
}

impl Config {
    /// Reads and validates `path`.
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

    /// Parses and validates `text`; `path` is only used in error messages.
    ///
    /// # Errors
    /// `text` is not valid TOML for this schema, or fails validation.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map_or((0, 0), |span| line_column(text, span.start));
            ConfigError::Parse {
                path: path.to_owned(),
                line,
                column,
                message: e.message().to_owned(),
            }
        })?;
        if config.xdp.interfaces.is_empty() {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                key: "xdp.interfaces",
                message: "names no interface; list at least one, e.g. [\"eth0\"]".into(),
            });
        }
        Ok(config)
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("lb.toml"), text)
    }

    #[test]
    fn minimal_config_takes_defaults() {
        let c = parse("[xdp]\ninterfaces = [\"eth0\"]\n").unwrap();
        assert_eq!(c.dataplane, DataplaneKind::Xdp);
        assert_eq!(c.xdp.interfaces, ["eth0"]);
        assert_eq!(c.xdp.mode, AttachMode::Auto);
    }

    #[test]
    fn mode_is_read() {
        let c = parse("[xdp]\ninterfaces = [\"a\", \"b\"]\nmode = \"generic\"\n").unwrap();
        assert_eq!(c.xdp.mode, AttachMode::Generic);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err = parse("[xdp]\ninterfaces = [\"eth0\"]\nmod = \"driver\"\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("lb.toml:3:1: "), "{msg}");
        assert!(msg.contains("unknown field `mod`"), "{msg}");
        assert!(msg.contains("mode"), "valid keys should be listed: {msg}");
    }

    #[test]
    fn bad_mode_lists_valid_values() {
        let err = parse("[xdp]\ninterfaces = [\"eth0\"]\nmode = \"native\"\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("lb.toml:3:8: "), "{msg}");
        assert!(
            msg.contains("auto") && msg.contains("driver") && msg.contains("generic"),
            "{msg}"
        );
    }

    #[test]
    fn empty_interface_list_is_rejected() {
        let err = parse("[xdp]\ninterfaces = []\n").unwrap_err();
        assert!(err.to_string().contains("xdp.interfaces"), "{err}");
    }

    #[test]
    fn line_column_counts_from_one() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
    }
}
