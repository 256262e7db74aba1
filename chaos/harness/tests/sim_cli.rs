//! Guards `finkfs-chaos sim` as operators run it: a range split over
//! several jobs still reports every seed once and sums the coverage, a
//! soak runs seeds until its time is up, and bad arguments are refused
//! with a usage error instead of running something else.

use std::process::{Command, Output};

fn sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_finkfs-chaos"))
        .arg("sim")
        .args(args)
        .output()
        .expect("finkfs-chaos runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn a_range_over_two_jobs_reports_every_seed_once_and_passes() {
    let output = sim(&["--seeds", "1..4", "--jobs", "2"]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    for seed in 1..4 {
        let line = format!("seed {seed}: ok, digest ");
        assert_eq!(text.matches(&line).count(), 1, "{line:?} in:\n{text}");
    }
    assert!(text.contains("3 run(s)"), "{text}");
    assert!(text.contains("0 violations"), "{text}");
}

#[test]
fn a_soak_runs_consecutive_seeds_from_the_one_given_until_its_time_is_up() {
    let output = sim(&["--soak", "--seed", "40", "--minutes", "0.05", "--jobs", "1"]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("soak: seeds from 40"), "{text}");
    assert!(text.contains("seed 40: ok"), "{text}");
    assert!(text.contains("0 violations"), "{text}");
}

#[test]
fn bad_arguments_are_usage_errors() {
    for args in [
        &["--seeds", "5..5"][..],
        &["--seeds", "7"][..],
        &["--soak", "--seeds", "1..3"][..],
        &["--soak", "--minutes", "0"][..],
        &["--minutes", "3"][..],
        &["--nodes", "7"][..],
    ] {
        let output = sim(args);
        assert_eq!(output.status.code(), Some(2), "{args:?} was accepted");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("error"),
            "{args:?}: no error message"
        );
    }
}
