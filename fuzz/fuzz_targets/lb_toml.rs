//! The lb.toml loader: parse, validate, model; what it accepts round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| balancer::config::fuzz::lb_toml(text));
