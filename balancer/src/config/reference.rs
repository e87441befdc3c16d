//! `balancer config schema`: a commented `lb.toml` reference, generated from the schema's own
//! doc comments and defaults (through its JSON Schema), so that it cannot drift from what the
//! loader accepts.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use crate::config::schema::Config;

/// One `[table]` of the reference, with its keys in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The header as written, e.g. `[[virtual_server.real_server]]`; empty for the top level.
    pub header: String,
    /// The headers of the tables that contain it, outermost first.
    pub ancestors: Vec<String>,
    pub keys: Vec<String>,
    text: String,
}

/// The reference as text.
#[must_use]
pub fn reference() -> String {
    let mut out = String::from(
        "# lb.toml reference, generated from the schema by `balancer config schema`.\n\
         # Every key with its meaning, its type and its default; `#key = VALUE` shows the default\n\
         # (or a placeholder for a required key). NAME stands for a name of your choice.\n",
    );
    for s in sections() {
        out.push('\n');
        out.push_str(&s.text);
    }
    out
}

/// The reference's tables, in the order printed.
#[must_use]
pub fn sections() -> Vec<Section> {
    let schema = schemars::schema_for!(Config);
    let root = schema.as_value();
    let mut walk = Walk {
        root,
        out: Vec::new(),
        seen: BTreeMap::new(),
    };
    walk.table(root, String::new(), "", Vec::new());
    walk.out
}

struct Walk<'a> {
    root: &'a Value,
    out: Vec<Section>,
    /// Definitions already printed, by the header that printed them.
    seen: BTreeMap<String, String>,
}

/// How a key is written in TOML.
enum Shape<'a> {
    Scalar,
    /// A struct: `[path]`.
    Table(&'a Value),
    /// A map of structs by name: `[path.NAME]`.
    Named(&'a Value),
    /// A list of structs: `[[path]]`.
    Array(&'a Value),
}

impl<'a> Walk<'a> {
    /// Follows `$ref` and drops the `null` of an `Option`.
    fn resolve(&self, mut s: &'a Value) -> &'a Value {
        for _ in 0..8 {
            if let Some(r) = s.get("$ref").and_then(Value::as_str) {
                let name = r.trim_start_matches("#/$defs/");
                match self.root.get("$defs").and_then(|d| d.get(name)) {
                    Some(def) => s = def,
                    None => return s,
                }
            } else if let Some(any) = s.get("anyOf").and_then(Value::as_array)
                && let [one] = any
                    .iter()
                    .filter(|a| a.get("type").and_then(Value::as_str) != Some("null"))
                    .collect::<Vec<_>>()[..]
            {
                s = one;
            } else {
                return s;
            }
        }
        s
    }

    fn shape(&self, s: &'a Value) -> Shape<'a> {
        let r = self.resolve(s);
        if r.get("properties").is_some() {
            return Shape::Table(r);
        }
        if let Some(values) = r.get("additionalProperties").filter(|v| v.is_object()) {
            let v = self.resolve(values);
            if v.get("properties").is_some() {
                return Shape::Named(v);
            }
        }
        if let Some(items) = r.get("items") {
            let i = self.resolve(items);
            if i.get("properties").is_some() {
                return Shape::Array(i);
            }
        }
        Shape::Scalar
    }

    fn table(&mut self, schema: &'a Value, header: String, path: &str, ancestors: Vec<String>) {
        let identity = schema.to_string();
        if let Some(first) = self.seen.get(&identity) {
            let text = format!("{header}\n# The keys of {first} above.\n");
            let keys = keys_of(schema);
            self.out.push(Section {
                header,
                ancestors,
                keys,
                text,
            });
            return;
        }
        if !header.is_empty() {
            self.seen.insert(identity, header.clone());
        }
        let mut text = String::new();
        if let Some(d) = schema.get("description").and_then(Value::as_str) {
            comment(&mut text, d);
        }
        if !header.is_empty() {
            let _ = writeln!(text, "{header}");
        }
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            return;
        };
        let mut nested = Vec::new();
        let mut keys = Vec::new();
        for (key, prop) in props {
            keys.push(key.clone());
            let child = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            let doc = prop
                .get("description")
                .or_else(|| self.resolve(prop).get("description"))
                .and_then(Value::as_str)
                .unwrap_or("");
            match self.shape(prop) {
                Shape::Scalar => {
                    text.push('\n');
                    comment(&mut text, doc);
                    self.scalar(&mut text, key, prop, required.contains(&key.as_str()));
                }
                Shape::Table(s) => nested.push((format!("[{child}]"), child, s, doc)),
                Shape::Named(s) => {
                    let child = format!("{child}.NAME");
                    nested.push((format!("[{child}]"), child, s, doc));
                }
                Shape::Array(s) => nested.push((format!("[[{child}]]"), child, s, doc)),
            }
        }
        self.out.push(Section {
            header: header.clone(),
            ancestors: ancestors.clone(),
            keys,
            text,
        });
        for (h, child, s, doc) in nested {
            let mut inner = ancestors.clone();
            if !header.is_empty() {
                inner.push(header.clone());
            }
            let at = self.out.len();
            self.table(s, h, &child, inner);
            // The field's own doc comment says what the table is for; the type's says more.
            if !doc.is_empty() {
                let mut lead = String::new();
                comment(&mut lead, doc);
                self.out[at].text.insert_str(0, &lead);
            }
        }
    }

    fn scalar(&self, text: &mut String, key: &str, prop: &Value, required: bool) {
        let r = self.resolve(prop);
        let choices = variants(r);
        if !choices.is_empty() {
            let _ = writeln!(text, "# One of:");
            for (value, doc) in &choices {
                let _ = writeln!(
                    text,
                    "#   {value:?}{}{doc}",
                    if doc.is_empty() { "" } else { ": " }
                );
            }
        }
        let default = prop.get("default").or_else(|| r.get("default"));
        let value = match default.filter(|d| !d.is_null()) {
            Some(d) => toml_literal(d),
            None => placeholder(self, r),
        };
        let nullable = r
            .get("type")
            .and_then(Value::as_array)
            .is_some_and(|t| t.iter().any(|t| t == "null"))
            || prop.get("anyOf").is_some();
        let note = if required {
            "  # required"
        } else if nullable && default.is_none() {
            "  # optional"
        } else {
            ""
        };
        let key = if key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            key.to_owned()
        } else {
            format!("{key:?}")
        };
        let _ = writeln!(text, "#{key} = {value}{note}");
    }
}

fn keys_of(schema: &Value) -> Vec<String> {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// An enum's values with their doc comments.
fn variants(r: &Value) -> Vec<(String, String)> {
    if let Some(values) = r.get("enum").and_then(Value::as_array) {
        return values
            .iter()
            .filter_map(Value::as_str)
            .map(|v| (v.to_owned(), String::new()))
            .collect();
    }
    r.get("oneOf")
        .and_then(Value::as_array)
        .map(|all| {
            all.iter()
                .filter_map(|v| {
                    let value = v
                        .get("const")
                        .or_else(|| v.get("enum").and_then(|e| e.get(0)))?
                        .as_str()?;
                    let doc = v.get("description").and_then(Value::as_str).unwrap_or("");
                    Some((value.to_owned(), doc.replace('\n', " ")))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn toml_literal(v: &Value) -> String {
    toml::Value::try_from(v).map_or_else(|_| v.to_string(), |t| t.to_string())
}

fn placeholder(walk: &Walk<'_>, r: &Value) -> String {
    let ty = r
        .get("type")
        .and_then(|t| match t {
            Value::Array(a) => a.iter().filter_map(Value::as_str).find(|t| *t != "null"),
            other => other.as_str(),
        })
        .unwrap_or("");
    match ty {
        "integer" => "0".into(),
        "number" => "0.0".into(),
        "boolean" => "false".into(),
        "array" => match r.get("items") {
            Some(items) => format!("[{}]", placeholder(walk, walk.resolve(items))),
            None => "[]".into(),
        },
        "object" => "{}".into(),
        _ => match r.get("format").and_then(Value::as_str) {
            Some("ip" | "ipv4") => "\"198.18.0.1\"".into(),
            _ => "\"...\"".into(),
        },
    }
}

/// `doc` as `# ` lines of at most about 96 columns.
fn comment(out: &mut String, doc: &str) {
    for paragraph in doc.split('\n') {
        let mut line = String::from("#");
        for word in paragraph.split_whitespace() {
            if line.len() + word.len() > 95 && line.len() > 1 {
                let _ = writeln!(out, "{line}");
                line = String::from("#");
            }
            line.push(' ');
            line.push_str(word);
        }
        let _ = writeln!(out, "{line}");
    }
}

#[cfg(test)]
mod tests;
