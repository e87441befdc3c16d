//! From a key path (`virtual_server[0].real_server[1].weight`) to where it was written, in
//! `lb.toml` (through toml's spanned document) or keepalived.conf (recorded by the importer).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use toml::de::{DeTable, DeValue};

use crate::config::diagnostic::Location;

/// Where a key was written; the nearest enclosing key when the key itself is absent.
pub trait Locate {
    fn locate(&self, key: &str) -> Location;
}

/// One step of a key path.
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

fn steps(key: &str) -> Vec<Step<'_>> {
    let mut out = Vec::new();
    for part in key.split('.') {
        let (name, rest) = part.split_once('[').unwrap_or((part, ""));
        if !name.is_empty() {
            out.push(Step::Key(name));
        }
        for index in rest.split('[') {
            if let Ok(i) = index.trim_end_matches(']').parse() {
                out.push(Step::Index(i));
            }
        }
    }
    out
}

/// `lb.toml` text.
pub struct TomlLocator {
    pub file: Arc<Path>,
    pub text: String,
}

impl Locate for TomlLocator {
    fn locate(&self, key: &str) -> Location {
        let Ok(doc) = DeTable::parse(&self.text) else {
            return Location::new(&self.file, 0, 0);
        };
        let mut span = doc.span();
        let mut table: Option<&DeTable<'_>> = Some(doc.get_ref());
        let mut array: Option<&[toml::Spanned<DeValue<'_>>]> = None;
        for step in steps(key) {
            let value = match step {
                Step::Key(name) => table
                    .and_then(|t| t.iter().find(|(k, _)| &**k.get_ref() == name))
                    .map(|(_, v)| v),
                Step::Index(i) => array.and_then(|a| a.get(i)),
            };
            let Some(value) = value else { break };
            span = value.span();
            table = None;
            array = None;
            match value.get_ref() {
                DeValue::Table(t) => table = Some(t),
                DeValue::Array(a) => array = Some(&**a),
                _ => {}
            }
        }
        let (line, column) = line_column(&self.text, span.start);
        Location::new(&self.file, line, column)
    }
}

/// keepalived.conf: the location of each key the importer mapped.
#[derive(Debug, Clone, Default)]
pub struct KeyLocations {
    pub file: Option<Arc<Path>>,
    pub keys: BTreeMap<String, crate::config::diagnostic::Location>,
}

impl Locate for KeyLocations {
    fn locate(&self, key: &str) -> Location {
        let mut key = key;
        loop {
            if let Some(l) = self.keys.get(key) {
                return l.clone();
            }
            if let Some(i) = key.rfind(['.', '[']) {
                key = &key[..i];
            } else {
                let file = self
                    .file
                    .clone()
                    .unwrap_or_else(|| Arc::from(Path::new("")));
                return Location::new(&file, 0, 0);
            }
        }
    }
}

/// 1-based line and column of byte `offset` in `text`.
#[must_use]
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_keys_and_falls_back_to_the_parent() {
        let text = "[xdp]\ninterfaces = [\"e\"]\n\n[[virtual_server]]\nip = \"198.18.0.1\"\n[[virtual_server.real_server]]\nip = \"198.18.0.2\"\nweight = -1\n";
        let l = TomlLocator {
            file: Arc::from(Path::new("lb.toml")),
            text: text.into(),
        };
        let at = |k: &str| {
            let loc = l.locate(k);
            (loc.line, loc.column)
        };
        assert_eq!(at("virtual_server[0].real_server[0].weight"), (8, 10));
        assert_eq!(at("virtual_server[0].ip"), (5, 6));
        assert_eq!(at("virtual_server[0].real_server[0].missing").0, 6);
    }

    #[test]
    fn line_column_counts_from_one() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
    }
}
