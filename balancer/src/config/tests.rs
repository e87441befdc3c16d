use std::path::Path;

use super::*;
use crate::dataplane::xdp::AttachMode;

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
