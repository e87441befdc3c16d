//! keepalived.conf as a tree of keywords: blocks, includes and conditional lines resolved,
//! every node remembering where it was written.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::diagnostic::{Diagnostic, Location};
use crate::config::keepalived::lexer::{self, Token, TokenKind};

/// keepalived gives up at a similar depth; deeper is a loop that the cycle check missed
/// (through symlinks to directories) or a configuration nobody can read.
pub const MAX_INCLUDE_DEPTH: usize = 16;
/// Deeper nesting than any keepalived block has; the limit keeps hostile input from
/// exhausting the stack.
pub const MAX_NESTING: usize = 64;
/// Larger than any configuration; an include that matches something bigger (a log, a core
/// file) is a mistake, and reading it whole would take the daemon's memory.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// One keyword with its arguments and, when it opened a `{ }` block, its children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub keyword: String,
    pub args: Vec<String>,
    pub children: Vec<Node>,
    /// Whether a `{ }` block followed (an empty block and no block differ for some keywords).
    pub has_block: bool,
    pub file: Arc<Path>,
    pub line: usize,
    pub column: usize,
}

impl Node {
    #[must_use]
    pub fn location(&self) -> Location {
        Location::new(&self.file, self.line, self.column)
    }
}

/// The whole configuration, includes spliced in where they were written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    pub nodes: Vec<Node>,
    /// Lines ignored on purpose (`@` conditional lines, includes that matched nothing).
    pub warnings: Vec<Diagnostic>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: cannot read")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{location}: expected {expected}, found {found}")]
    Syntax {
        location: Location,
        expected: String,
        found: String,
    },
    #[error("{location}: include {pattern:?} is nested more than {MAX_INCLUDE_DEPTH} deep")]
    IncludeDepth { location: Location, pattern: String },
    #[error("{location}: include {target} includes itself (through {chain})")]
    IncludeCycle {
        location: Location,
        target: PathBuf,
        chain: String,
    },
    #[error("{location}: include pattern {pattern:?} is not valid: {message}")]
    IncludePattern {
        location: Location,
        pattern: String,
        message: String,
    },
    #[error("{location}: {what} is not supported; write the values out")]
    Unsupported {
        location: Location,
        what: &'static str,
    },
}

/// Reads `path` and everything it includes.
///
/// # Errors
/// A file cannot be read, or is not keepalived.conf syntax.
pub fn read(path: &Path) -> Result<Tree, ReadError> {
    parse(path, &read_text(path)?)
}

/// A file's text, at most [`MAX_FILE_BYTES`].
fn read_text(path: &Path) -> Result<String, ReadError> {
    use std::io::Read as _;

    let io = |source| ReadError::Io {
        path: path.to_owned(),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_string(&mut text))
        .map_err(io)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("larger than {MAX_FILE_BYTES} bytes"),
        )));
    }
    Ok(text)
}

/// `**` (any number of stars) as the single `*` glob(3) reads it as.
fn collapse_double_star(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    for c in pattern.chars() {
        if !(c == '*' && out.ends_with('*')) {
            out.push(c);
        }
    }
    out
}

/// Parses `text` as if read from `path`: includes are relative to `path`'s directory.
///
/// # Errors
/// `text`, or a file it includes, is not keepalived.conf syntax or cannot be read.
pub fn parse(path: &Path, text: &str) -> Result<Tree, ReadError> {
    let mut reader = Reader::default();
    let stack = vec![std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())];
    let nodes = reader.file(path, text, &stack)?;
    Ok(Tree {
        nodes,
        warnings: reader.warnings,
    })
}

#[derive(Default)]
struct Reader {
    warnings: Vec<Diagnostic>,
}

enum Item {
    Token(Token),
    Newline,
}

struct Cursor {
    items: Vec<(usize, Item)>,
    pos: usize,
    file: Arc<Path>,
}

impl Cursor {
    fn peek(&self) -> Option<&(usize, Item)> {
        self.items.get(self.pos)
    }

    fn end_location(&self) -> Location {
        let line = self.items.last().map_or(1, |(l, _)| *l);
        Location::new(&self.file, line, 1)
    }
}

fn syntax(location: Location, expected: impl Into<String>, found: impl Into<String>) -> ReadError {
    ReadError::Syntax {
        location,
        expected: expected.into(),
        found: found.into(),
    }
}

impl Reader {
    fn file(&mut self, path: &Path, text: &str, stack: &[PathBuf]) -> Result<Vec<Node>, ReadError> {
        let file: Arc<Path> = Arc::from(path);
        let mut items = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let tokens = lexer::tokens(line).map_err(|e| {
                syntax(
                    Location::new(&file, number, e.column),
                    e.expected,
                    "the end of the line",
                )
            })?;
            if let Some(Token {
                kind: TokenKind::Word(first),
                column,
            }) = tokens.first()
            {
                if first.starts_with('@') {
                    // keepalived compares the word with its config-id (`-i`), which we do
                    // not have; guessing would apply lines meant for another node.
                    self.warnings.push(Diagnostic {
                        location: Location::new(&file, number, *column),
                        key: first.clone(),
                        found: "conditional line ignored".into(),
                        expected: String::new(),
                    });
                    continue;
                }
                if first.starts_with('$') || first.starts_with('~') {
                    return Err(ReadError::Unsupported {
                        location: Location::new(&file, number, *column),
                        what: "parameter substitution ($NAME=VALUE) or a sequence block (~SEQ)",
                    });
                }
            }
            items.extend(tokens.into_iter().map(|t| (number, Item::Token(t))));
            items.push((number, Item::Newline));
        }
        let mut cursor = Cursor {
            items,
            pos: 0,
            file,
        };
        self.block(&mut cursor, None, 0, stack)
    }

    /// The statements up to the `}` that closes `opened_at` (or the end of the file).
    fn block(
        &mut self,
        cur: &mut Cursor,
        opened_at: Option<Location>,
        nesting: usize,
        stack: &[PathBuf],
    ) -> Result<Vec<Node>, ReadError> {
        if nesting > MAX_NESTING {
            let location = opened_at.unwrap_or_else(|| cur.end_location());
            return Err(syntax(
                location,
                format!("at most {MAX_NESTING} nested blocks"),
                "deeper nesting",
            ));
        }
        let mut nodes = Vec::new();
        loop {
            let Some((line, item)) = cur.peek() else {
                return match opened_at {
                    Some(open) => Err(syntax(
                        cur.end_location(),
                        format!("'}}' to close the block opened at line {}", open.line),
                        "the end of the file",
                    )),
                    None => Ok(nodes),
                };
            };
            let line = *line;
            match item {
                Item::Newline => cur.pos += 1,
                Item::Token(Token {
                    kind: TokenKind::Close,
                    column,
                }) => {
                    if opened_at.is_some() {
                        cur.pos += 1;
                        return Ok(nodes);
                    }
                    return Err(syntax(
                        Location::new(&cur.file, line, *column),
                        "a keyword",
                        "'}' with no block open",
                    ));
                }
                Item::Token(Token {
                    kind: TokenKind::Open,
                    column,
                }) => {
                    return Err(syntax(
                        Location::new(&cur.file, line, *column),
                        "a keyword before '{'",
                        "'{'",
                    ));
                }
                Item::Token(Token {
                    kind: TokenKind::Word(word),
                    column,
                }) => {
                    let node = Node {
                        keyword: word.clone(),
                        args: Vec::new(),
                        children: Vec::new(),
                        has_block: false,
                        file: Arc::clone(&cur.file),
                        line,
                        column: *column,
                    };
                    cur.pos += 1;
                    let node = self.statement(cur, node, nesting, stack)?;
                    if is_include(&node.keyword) {
                        nodes.extend(self.include(&node, stack)?);
                    } else {
                        nodes.push(node);
                    }
                }
            }
        }
    }

    /// The arguments of `node` and its block, which may open on the next line.
    fn statement(
        &mut self,
        cur: &mut Cursor,
        mut node: Node,
        nesting: usize,
        stack: &[PathBuf],
    ) -> Result<Node, ReadError> {
        while let Some((
            _,
            Item::Token(Token {
                kind: TokenKind::Word(w),
                ..
            }),
        )) = cur.peek()
        {
            node.args.push(w.clone());
            cur.pos += 1;
        }
        // keepalived accepts the opening brace on the following line(s) too.
        let mut look = cur.pos;
        while let Some((_, Item::Newline)) = cur.items.get(look) {
            look += 1;
        }
        if let Some((
            _,
            Item::Token(Token {
                kind: TokenKind::Open,
                ..
            }),
        )) = cur.items.get(look)
        {
            cur.pos = look + 1;
            node.has_block = true;
            node.children = self.block(cur, Some(node.location()), nesting + 1, stack)?;
        }
        Ok(node)
    }

    fn include(&mut self, node: &Node, stack: &[PathBuf]) -> Result<Vec<Node>, ReadError> {
        let location = node.location();
        let [pattern] = node.args.as_slice() else {
            return Err(syntax(
                location,
                format!("{} FILENAME (one pattern)", node.keyword),
                format!("{} arguments", node.args.len()),
            ));
        };
        if node.has_block {
            return Err(syntax(location, "no block after include", "'{'"));
        }
        if stack.len() > MAX_INCLUDE_DEPTH {
            return Err(ReadError::IncludeDepth {
                location,
                pattern: pattern.clone(),
            });
        }
        // keepalived.conf(5): relative paths are relative to the including file's directory.
        let base = node.file.parent().unwrap_or_else(|| Path::new(""));
        let full = base.join(pattern).to_string_lossy().into_owned();
        // glob(3), which keepalived calls, has no recursive `**`: there it is `*`. The glob
        // crate would walk whole trees for it (`/**`).
        let full = collapse_double_star(&full);
        let paths = glob::glob(&full).map_err(|e| ReadError::IncludePattern {
            location: location.clone(),
            pattern: pattern.clone(),
            message: e.msg.to_owned(),
        })?;
        let mut nodes = Vec::new();
        let mut matched = false;
        for entry in paths {
            let path = entry.map_err(|e| ReadError::Io {
                path: e.path().to_owned(),
                source: e.into(),
            })?;
            let kind = std::fs::metadata(&path).map(|m| m.file_type());
            if kind.as_ref().is_ok_and(std::fs::FileType::is_dir) {
                continue;
            }
            if kind.as_ref().is_ok_and(|k| !k.is_file()) {
                // A FIFO or a device would block or never end.
                return Err(syntax(
                    location,
                    "an include of regular files",
                    format!("{} (a device, FIFO or socket)", path.display()),
                ));
            }
            matched = true;
            let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            if stack.contains(&canonical) {
                let chain = stack
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" -> ");
                return Err(ReadError::IncludeCycle {
                    location,
                    target: canonical,
                    chain,
                });
            }
            let text = read_text(&path)?;
            let mut inner = stack.to_vec();
            inner.push(canonical);
            nodes.extend(self.file(&path, &text, &inner)?);
        }
        if !matched {
            // keepalived's plain `include` is not an error either: conf.d may be empty.
            self.warnings.push(Diagnostic {
                location,
                key: node.keyword.clone(),
                found: format!("{pattern:?} matched no file"),
                expected: String::new(),
            });
        }
        Ok(nodes)
    }
}

/// `include` and its checked variants (`includer`, `includem`...), which we treat alike.
fn is_include(keyword: &str) -> bool {
    matches!(
        keyword,
        "include" | "includer" | "includem" | "includew" | "includeb" | "includea"
    )
}
