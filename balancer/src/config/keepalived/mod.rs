//! keepalived.conf accepted as is: [`tree`] reads keepalived's grammar into keyword nodes.

pub mod lexer;
pub mod tree;

#[cfg(test)]
mod tree_tests;

pub use tree::{Node, ReadError, Tree, parse, read};
