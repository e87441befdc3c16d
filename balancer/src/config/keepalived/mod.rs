//! keepalived.conf accepted as is: [`tree`] reads keepalived's grammar into keyword nodes,
//! [`import`] maps them onto `lb.toml`'s schema.

pub mod import;
mod import_lvs;
pub mod lexer;
pub mod tree;

#[cfg(test)]
mod tree_tests;

pub use import::{Imported, import};
pub use tree::{Node, ReadError, Tree, parse, read};
