//! The reference names every key the loader accepts. The list of keys comes from serde itself
//! (the "expected one of" of an unknown key in each table), not from the reference's walk.

use super::{reference, sections};
use crate::config::Config;

/// The keys serde accepts in the table `header` (under `ancestors`), from the message it gives
/// for an unknown one.
fn serde_keys(ancestors: &[String], header: &str) -> Vec<String> {
    let mut probe = String::new();
    for h in ancestors.iter().map(String::as_str).chain([header]) {
        if !h.is_empty() {
            probe.push_str(&h.replace("NAME", "n"));
            probe.push('\n');
        }
    }
    probe.push_str("zz_not_a_key = 1\n");
    let err = toml::from_str::<Config>(&probe)
        .expect_err(&probe)
        .to_string();
    let expected = err
        .split("unknown field `zz_not_a_key`, expected ")
        .nth(1)
        .unwrap_or_else(|| panic!("{probe}: {err}"));
    let expected = expected.lines().next().unwrap();
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_key_serde_accepts_is_in_the_reference() {
    let all = sections();
    let text = reference();
    assert!(all.len() >= 15, "{}", all.len());
    for s in &all {
        let accepted = serde_keys(&s.ancestors, &s.header);
        assert!(!accepted.is_empty(), "{}", s.header);
        for key in &accepted {
            assert!(
                s.keys.contains(key),
                "{}: {key} is accepted but not in the reference",
                s.header
            );
        }
        assert_eq!(accepted.len(), s.keys.len(), "{}", s.header);
    }
    // Each table's keys are printed, with what they mean (a doc comment on every field).
    for header in [
        "[xdp]",
        "[connections]",
        "[control]",
        "[metrics]",
        "[global_defs]",
        "[vrrp_instance.NAME]",
        "[[virtual_server]]",
        "[[virtual_server.real_server]]",
        "[[virtual_server.real_server.TCP_CHECK]]",
    ] {
        assert!(text.contains(&format!("\n{header}\n")), "{header}\n{text}");
    }
    for line in [
        "#dataplane = \"xdp\"",
        "#   \"ipvs\": The kernel's IPVS",
        "#interfaces = [\"...\"]  # required",
        "#mode = \"auto\"",
        "#delay_loop = 60.0",
        "#lb_algo = \"wlc\"",
        "#virtual_router_id = 0  # required",
        "#sh-port = false",
        "#enabled = false",
        "#listen = \"127.0.0.1:9100\"",
        "#socket = \"...\"  # optional",
        "#table_size = 1048576",
    ] {
        assert!(text.contains(line), "{line}\n{text}");
    }
    let undocumented: Vec<&str> = text
        .split("\n\n")
        .filter(|block| {
            let lines: Vec<&str> = block.lines().collect();
            lines
                .iter()
                .any(|l| l.starts_with('#') && l.contains(" = "))
                && lines.first().is_some_and(|l| l.contains(" = "))
        })
        .collect();
    assert!(
        undocumented.is_empty(),
        "keys without a comment: {undocumented:?}"
    );
}

#[test]
fn the_defaults_shown_are_the_loaders() {
    // Uncommenting a shown default changes nothing.
    let minimal = "[xdp]\ninterfaces = [\"eth0\"]\n";
    let defaults = "dataplane = \"xdp\"\n[xdp]\ninterfaces = [\"eth0\"]\nmode = \"auto\"\n\
                    [connections]\ntable_size = 1048576\ntcp_timeout = 900\ntcpfin_timeout = 120\nudp_timeout = 300\n\
                    [metrics]\nenabled = false\nlisten = \"127.0.0.1:9100\"\n";
    let text = reference();
    for line in defaults
        .lines()
        .filter(|l| l.contains(" = ") && !l.starts_with("interfaces"))
    {
        assert!(text.contains(&format!("#{line}\n")), "{line}");
    }
    let a: Config = toml::from_str(minimal).unwrap();
    let b: Config = toml::from_str(defaults).unwrap();
    assert_eq!(a, b);
}
