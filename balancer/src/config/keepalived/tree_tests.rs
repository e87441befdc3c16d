use std::fmt::Write as _;
use std::path::Path;

use super::tree::{MAX_NESTING, Node, ReadError, parse, read};
use crate::config::test_dir::TestDir;

fn nodes(text: &str) -> Vec<Node> {
    parse(Path::new("keepalived.conf"), text).unwrap().nodes
}

fn shape(nodes: &[Node]) -> Vec<String> {
    nodes
        .iter()
        .map(|n| {
            let mut s = format!("{}@{}", n.keyword, n.line);
            for a in &n.args {
                s.push(' ');
                s.push_str(a);
            }
            if n.has_block {
                let _ = write!(s, " {{{}}}", shape(&n.children).join("; "));
            }
            s
        })
        .collect()
}

#[test]
fn braces_on_the_same_or_the_next_line() {
    let text = "vrrp_instance VI_1 {\n  state MASTER\n}\nvrrp_instance VI_2\n{\n  virtual_ipaddress\n\n  {\n    198.18.0.1/24 dev eth0\n  }\n}\n";
    assert_eq!(
        shape(&nodes(text)),
        [
            "vrrp_instance@1 VI_1 {state@2 MASTER}",
            "vrrp_instance@4 VI_2 {virtual_ipaddress@6 {198.18.0.1/24@9 dev eth0}}"
        ]
    );
}

#[test]
fn blocks_on_one_line_and_comments() {
    let text =
        "! header\n# another\nunicast_peer { 198.18.0.2 } # trailing\nx { a { b } }\nempty {}\n";
    assert_eq!(
        shape(&nodes(text)),
        [
            "unicast_peer@3 {198.18.0.2@3}",
            "x@4 {a@4 {b@4}}",
            "empty@5 {}"
        ]
    );
}

#[test]
fn quoted_arguments_keep_spaces() {
    let n = nodes("vrrp_script s {\n  script \"/bin/check --flag 'a b'\"\n}\n");
    assert_eq!(n[0].children[0].args, ["/bin/check --flag 'a b'"]);
}

#[test]
fn conditional_lines_are_ignored_with_a_warning() {
    let tree = parse(
        Path::new("k.conf"),
        "global_defs {\n  @main router_id a\n  @^backup router_id b\n  router_id c\n}\n",
    )
    .unwrap();
    assert_eq!(shape(&tree.nodes), ["global_defs@1 {router_id@4 c}"]);
    assert_eq!(tree.warnings.len(), 2);
    let w = tree.warnings[0].to_string();
    assert!(
        w.starts_with("k.conf:2:3: @main: conditional line ignored"),
        "{w}"
    );
}

#[test]
fn syntax_errors_name_file_line_and_expectation() {
    let cases = [
        (
            "a {\n b\n",
            "k.conf:2:1: expected '}' to close the block opened at line 1",
        ),
        (
            "a\n}\n",
            "k.conf:2:1: expected a keyword, found '}' with no block open",
        ),
        ("{\n", "k.conf:1:1: expected a keyword before '{'"),
        (
            "a \"b\n",
            "k.conf:1:3: expected a closing \" on the same line",
        ),
        ("$X=1\n", "k.conf:1:1: parameter substitution"),
    ];
    for (text, expected) in cases {
        let err = parse(Path::new("k.conf"), text).unwrap_err().to_string();
        assert!(err.starts_with(expected), "{text:?}: {err}");
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let text = "a {\n".repeat(MAX_NESTING + 5);
    let err = parse(Path::new("k.conf"), &text).unwrap_err();
    assert!(matches!(err, ReadError::Syntax { .. }), "{err}");
    // Arbitrary bytes never panic.
    for text in ["}{", "\"", "'\\x", "{{}}", "a\u{0}b {", "\\\\ { } } {"] {
        let _ = parse(Path::new("k.conf"), text);
    }
}

#[test]
fn include_globs_are_relative_to_the_including_file() {
    let dir = TestDir::new();
    let main = dir.write(
        "keepalived.conf",
        "global_defs {\n  router_id r1\n}\ninclude conf.d/*.conf\ninclude missing/*.conf\n",
    );
    dir.write("conf.d/b.conf", "vrrp_instance B {\n}\n");
    dir.write(
        "conf.d/a.conf",
        "include ../more/x.conf\nvrrp_instance A {\n}\n",
    );
    dir.write("conf.d/ignored.txt", "not keepalived {\n");
    dir.write("more/x.conf", "vrrp_script X {\n}\n");
    let tree = read(&main).unwrap();
    assert_eq!(
        shape(&tree.nodes),
        [
            "global_defs@1 {router_id@2 r1}",
            "vrrp_script@1 {}",
            "vrrp_instance@2 A {}",
            "vrrp_instance@1 B {}"
        ]
        .map(|s| s.replace("vrrp_script@1 {}", "vrrp_script@1 X {}"))
    );
    assert!(tree.nodes[1].file.ends_with("more/x.conf"));
    assert!(tree.nodes[2].file.ends_with("conf.d/a.conf"));
    assert_eq!(tree.warnings.len(), 1, "{:?}", tree.warnings);
    assert!(tree.warnings[0].to_string().contains("matched no file"));
}

#[test]
fn include_cycles_are_errors() {
    let dir = TestDir::new();
    let main = dir.write("a.conf", "include b.conf\n");
    dir.write("b.conf", "x 1\ninclude a.conf\n");
    let err = read(&main).unwrap_err();
    assert!(matches!(err, ReadError::IncludeCycle { .. }), "{err}");
    assert!(err.to_string().contains("b.conf:2:1"), "{err}");
    assert!(dir.path().exists());
}
