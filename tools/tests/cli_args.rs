//! Guards against a CLI that answers bad input with a panic, a usage dump,
//! a silent success or a network wait: every refusal here is one
//! `finkfs:` line on stderr and exit code 2, before any connection.

mod cli_support;

use cli_support::{assert_one_line_error, run, texts};

/// An address nothing listens on: a command that tried to connect would
/// fail there slowly, after its retries.
const DEAD: &str = "127.0.0.1:1";

#[test]
fn unknown_command_is_a_one_line_usage_error() {
    let output = run(&["frobnicate"]);
    assert_one_line_error(&output, 2, "unrecognized subcommand 'frobnicate'");
}

#[test]
fn misspelled_command_suggests_the_right_one() {
    let output = run(&["puut", "a", "b"]);
    assert_one_line_error(&output, 2, "'put'");
}

#[test]
fn missing_arguments_are_named() {
    let output = run(&["put"]);
    assert_one_line_error(&output, 2, "<LOCAL> <REMOTE>");
}

#[test]
fn backward_range_is_refused_before_connecting() {
    let output = run(&["--cluster", DEAD, "get", "a/b", "--range", "10-2"]);
    assert_one_line_error(&output, 2, "ends before it starts");
}

#[test]
fn malformed_ranges_are_refused() {
    for bad in ["abc", "-5", "1-x", "5"] {
        let range = format!("--range={bad}");
        let output = run(&["--cluster", DEAD, "get", "a/b", &range]);
        assert_one_line_error(&output, 2, "is not a byte range");
    }
}

#[test]
fn missing_cluster_names_the_flag_and_the_variable() {
    for command in [
        &["ls"][..],
        &["status"],
        &["stat", "a"],
        &["rm", "a"],
        &["get", "a"],
    ] {
        let output = run(command);
        assert_one_line_error(&output, 2, "no cluster given");
        let (_, stderr) = texts(&output);
        assert!(stderr.contains("--cluster") && stderr.contains("FINKFS_CLUSTER"));
    }
}

#[test]
fn cluster_from_the_environment_is_checked_too() {
    let output = cli_support::finkfs()
        .env("FINKFS_CLUSTER", "no-port-here")
        .arg("ls")
        .output()
        .expect("run finkfs");
    assert_one_line_error(&output, 2, "is not HOST:PORT");
}

#[test]
fn init_member_without_its_client_address_is_refused() {
    let output = run(&["cluster", "init", "1=10.0.0.1:7001"]);
    assert_one_line_error(&output, 2, "1=PEER_ADDR,CLIENT_ADDR");
}

#[test]
fn bad_object_path_is_refused_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, b"x").unwrap();
    let file = file.to_str().unwrap();
    let output = run(&["--cluster", DEAD, "put", file, "/absolute/path"]);
    assert_one_line_error(&output, 2, "starts with '/'");
}

#[test]
fn recursive_put_of_a_missing_directory_fails_before_connecting() {
    let output = run(&["--cluster", DEAD, "put", "-r", "/nonexistent/dir", "p"]);
    assert_one_line_error(&output, 2, "/nonexistent/dir");
}

#[test]
fn demo_without_the_node_binary_says_how_to_build_it() {
    let output = run(&["demo", "--node-bin", "/nonexistent/finkfs-node"]);
    assert_one_line_error(&output, 2, "cargo build --release");
}

#[test]
fn help_documents_the_exit_codes_and_the_cluster_variable() {
    let output = run(&["--help"]);
    let (stdout, _) = texts(&output);
    assert_eq!(output.status.code(), Some(0));
    assert!(stdout.contains("Exit codes:"), "{stdout}");
    assert!(stdout.contains("FINKFS_CLUSTER"), "{stdout}");
}

#[test]
fn every_client_command_has_help_with_examples() {
    for command in ["put", "get", "ls", "stat", "rm", "status", "demo"] {
        let output = run(&[command, "--help"]);
        let (stdout, _) = texts(&output);
        assert_eq!(output.status.code(), Some(0), "{command}");
        assert!(stdout.contains("finkfs "), "{command}: {stdout}");
        assert!(
            stdout.to_lowercase().contains("example"),
            "{command}: {stdout}"
        );
    }
    for command in ["init", "add", "remove"] {
        let output = run(&["cluster", command, "--help"]);
        let (stdout, _) = texts(&output);
        assert!(stdout.contains("Example"), "cluster {command}: {stdout}");
    }
}

#[test]
fn bare_command_shows_help_and_exits_2() {
    let output = run(&[]);
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(2));
    assert!(format!("{stdout}{stderr}").contains("Commands:"));
}
