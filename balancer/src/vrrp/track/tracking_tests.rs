use std::path::PathBuf;

use super::*;
use crate::notify::{Script, ScriptUser};

fn script(weight: i32, init_fail: bool) -> TrackScript {
    let mut t = TrackScript::new(Script {
        command: "/bin/true".into(),
        program: PathBuf::from("/bin/true"),
        args: Vec::new(),
        user: ScriptUser::current(),
        shell: false,
    });
    t.weight = weight;
    t.init_fail = init_fail;
    t
}

fn file(weight: i32) -> TrackFile {
    let mut f = TrackFile::new(PathBuf::from("/run/x"));
    f.weight = weight;
    f
}

fn link(index: usize, ifindex: u32, up: bool) -> Update {
    Update::Link { index, ifindex, up }
}

#[test]
fn interface_weights_apply_by_sign() {
    let track = Track {
        interfaces: vec![
            TrackInterface {
                name: "a".into(),
                weight: Some(10),
            },
            TrackInterface {
                name: "b".into(),
                weight: Some(-20),
            },
            TrackInterface {
                name: "c".into(),
                weight: None,
            },
        ],
        ..Track::default()
    };
    let mut t = Tracking::new(&track);
    for u in [link(0, 1, true), link(1, 2, true), link(2, 3, true)] {
        assert!(!t.ready());
        t.apply(&u);
    }
    t.apply(&link(3, 4, true));
    assert!(t.ready());
    // Positive weight counts while up.
    assert_eq!(t.events(), [Event::PriorityChanged { weight: 10 }]);
    t.apply(&link(1, 2, false));
    t.apply(&link(2, 3, false));
    // Negative weight counts while down.
    assert_eq!(t.events(), [Event::PriorityChanged { weight: -20 }]);
    // Unweighted (and the own interface): FAULT by ifindex.
    t.apply(&link(3, 4, false));
    t.apply(&link(0, 1, false));
    assert_eq!(
        t.events(),
        [
            Event::InterfaceDown { ifindex: 1 },
            Event::InterfaceDown { ifindex: 4 }
        ]
    );
    t.apply(&link(0, 1, true));
    assert_eq!(t.events(), [Event::InterfaceUp { ifindex: 1 }]);
    assert!(t.events().is_empty());

    // dont_track_primary: the own interface is read (the instance needs its state to start)
    // but its going down is no FAULT; a tracked one still is.
    let mut t = Tracking::new(&Track {
        dont_track_primary: true,
        ..track
    });
    for u in [
        link(0, 1, true),
        link(1, 2, true),
        link(2, 3, true),
        link(3, 4, true),
    ] {
        t.apply(&u);
    }
    assert!(t.ready());
    let _ = t.events();
    t.apply(&link(0, 1, false));
    assert!(t.events().is_empty());
    t.apply(&link(3, 4, false));
    assert_eq!(t.events(), [Event::InterfaceDown { ifindex: 4 }]);
}

#[test]
fn script_weights_follow_keepalived() {
    let track = Track {
        scripts: vec![script(30, false), script(-50, false), script(-5, true)],
        ..Track::default()
    };
    let mut t = Tracking::new(&track);
    t.apply(&link(0, 1, true));
    // Weighted scripts do not hold the start; an init_fail one counts as failed at once.
    assert!(t.ready());
    assert_eq!(t.events(), [Event::PriorityChanged { weight: -5 }]);
    t.apply(&Update::Script { index: 0, ok: true });
    t.apply(&Update::Script { index: 1, ok: true });
    assert_eq!(t.events(), [Event::PriorityChanged { weight: 25 }]);
    t.apply(&Update::Script {
        index: 0,
        ok: false,
    });
    t.apply(&Update::Script {
        index: 1,
        ok: false,
    });
    t.apply(&Update::Script { index: 2, ok: true });
    assert_eq!(t.events(), [Event::PriorityChanged { weight: -50 }]);
    assert!(!t.failing());
}

#[test]
fn unweighted_scripts_hold_the_start_then_fault() {
    let track = Track {
        scripts: vec![script(0, false)],
        ..Track::default()
    };
    let mut t = Tracking::new(&track);
    t.apply(&link(0, 1, true));
    assert!(!t.ready());
    t.apply(&Update::Script {
        index: 0,
        ok: false,
    });
    assert!(t.ready());
    assert_eq!(t.events(), [Event::TrackersFailing { failing: true }]);
    t.apply(&Update::Script { index: 0, ok: true });
    assert_eq!(t.events(), [Event::TrackersFailing { failing: false }]);
    // init_fail: failing from the start.
    let mut t = Tracking::new(&Track {
        scripts: vec![script(0, true)],
        ..Track::default()
    });
    t.apply(&link(0, 1, true));
    assert!(t.ready());
    assert_eq!(t.events(), [Event::TrackersFailing { failing: true }]);
}

#[test]
fn files_add_weight_times_value_or_fault() {
    let track = Track {
        files: vec![file(1), file(10), file(0)],
        ..Track::default()
    };
    let mut t = Tracking::new(&track);
    t.apply(&link(0, 1, true));
    t.apply(&Update::File {
        index: 0,
        value: -7,
    });
    t.apply(&Update::File { index: 1, value: 2 });
    assert!(!t.ready());
    t.apply(&Update::File { index: 2, value: 0 });
    assert!(t.ready());
    assert_eq!(t.events(), [Event::PriorityChanged { weight: 13 }]);
    t.apply(&Update::File { index: 2, value: 1 });
    assert_eq!(t.events(), [Event::TrackersFailing { failing: true }]);
    t.apply(&Update::File { index: 2, value: 0 });
    t.apply(&Update::File {
        index: 0,
        value: -300,
    });
    assert_eq!(t.events(), [Event::PriorityChanged { weight: 20 }]);
    assert!(t.failing());
    let weights = Tracking::new(&Track::default());
    assert_eq!(weights.weight(), 0);
}
