//! Where a configuration problem is, and what would be valid there.
//!
//! Both readers (`lb.toml` and keepalived.conf) and the validator speak in these terms, so an
//! operator sees the same shape of message whichever file they wrote.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// A position in a configuration file; lines and columns count from 1 (0: unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: Arc<Path>,
    pub line: usize,
    pub column: usize,
}

impl Location {
    #[must_use]
    pub fn new(file: &Arc<Path>, line: usize, column: usize) -> Self {
        Self {
            file: Arc::clone(file),
            line,
            column,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// One problem (or, among warnings, one thing ignored): where, which key, what was found and
/// what would be valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub location: Location,
    /// The key's path, e.g. `vrrp_instance.VI_1.priority` or `virtual_server[0].lb_algo`.
    pub key: String,
    pub found: String,
    /// What would be valid; empty where nothing is expected (a warning about an ignored key).
    pub expected: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.location, self.key, self.found)?;
        if !self.expected.is_empty() {
            write!(f, "; expected {}", self.expected)?;
        }
        Ok(())
    }
}

/// Every problem found in one pass, in file order; then the warnings found on the way,
/// which `balancer check` shows beside the errors as `keepalived -t` does (they are not part
/// of the message).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>, pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// The closest of `candidates` to a misspelt `word`, when one is close enough to be a typo.
#[must_use]
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    // Two edits catch the usual slips (a doubled or dropped letter, a swap) without
    // suggesting unrelated short keys.
    let limit = (word.len() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_only_near_misses() {
        let keys = ["priority", "advert_int", "interface"];
        assert_eq!(did_you_mean("priorty", keys), Some("priority"));
        assert_eq!(did_you_mean("advret_int", keys), Some("advert_int"));
        assert_eq!(did_you_mean("weight", keys), None);
    }

    #[test]
    fn display_names_file_line_column_key_and_expectation() {
        let d = Diagnostic {
            location: Location::new(&Arc::from(Path::new("lb.toml")), 3, 5),
            key: "vrrp_instance.VI_1.priority".into(),
            found: "0".into(),
            expected: "1 to 255".into(),
        };
        assert_eq!(
            d.to_string(),
            "lb.toml:3:5: vrrp_instance.VI_1.priority: 0; expected 1 to 255"
        );
    }
}
