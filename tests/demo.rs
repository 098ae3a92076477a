//! `dsys demo` through the real binary: it runs its whole story with no setup, shows the
//! coordinator's redistribution plan for the server it kills, prints each client's
//! registration as a client would, and exits 0 only when nothing was lost.

mod common;

use std::time::Duration;

use common::run_dsys;

/// The demo's own steps each allow 10 s; the whole takes a few seconds on an idle machine.
const DEMO_TIMEOUT: Duration = Duration::from_secs(90);

#[test]
fn the_demo_shows_the_redistribution_plan_and_exits_0() {
    let done = run_dsys(&["demo"], &[], DEMO_TIMEOUT);
    assert_eq!(
        done.code(),
        Some(0),
        "the demo failed; stdout:\n{}\nstderr:\n{}",
        done.stdout,
        done.stderr.join("\n")
    );
    let plans = done
        .stdout
        .lines()
        .filter(|l| l.contains("redistribution plan from="))
        .count();
    assert_eq!(
        plans, 1,
        "one plan, for the killed server:\n{}",
        done.stdout
    );
    let registrations = done
        .stdout
        .lines()
        .filter(|l| l.contains("Registration successful! name="))
        .count();
    assert_eq!(registrations, 6, "one per client:\n{}", done.stdout);
    assert!(
        done.stdout.contains("lost 0; duplicated 0; out of order 0"),
        "{}",
        done.stdout
    );
}
