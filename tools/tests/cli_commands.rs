//! Guards against client commands that lose or alter bytes between a local
//! file and the cluster, that report success when something failed, or
//! whose exit codes lie (a missing object must be 1, not 0 or 2).

mod cli_support;

use cli_support::{texts, OneNode};

#[test]
fn objects_round_trip_through_put_get_ls_stat_rm() {
    let Some(cluster) = OneNode::start() else {
        return;
    };
    let dir = cluster.dir.path();
    let local = dir.join("alert.avro");
    let data: Vec<u8> = (0..150_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&local, &data).unwrap();
    let local = local.to_str().unwrap();

    let put = cluster.finkfs(&["put", local, "ztf/raw/a.avro"]);
    assert!(put.status.success(), "{:?}", texts(&put));
    let blake3 = blake3::hash(&data).to_hex().to_string();
    assert!(texts(&put).0.contains(&blake3), "{:?}", texts(&put));

    let got = cluster.finkfs(&["get", "ztf/raw/a.avro"]);
    assert!(got.status.success());
    assert_eq!(got.stdout, data, "stdout holds the object");

    let copy = dir.join("copy.avro");
    let get = cluster.finkfs(&["get", "ztf/raw/a.avro", copy.to_str().unwrap()]);
    assert!(get.status.success(), "{:?}", texts(&get));
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        data,
        "the file holds the object"
    );

    let ls = cluster.finkfs(&["ls", "-l", "ztf/"]);
    let (listing, _) = texts(&ls);
    assert_eq!(listing.lines().count(), 1, "{listing}");
    assert!(
        listing.contains("150000") && listing.contains(&blake3),
        "{listing}"
    );

    let stat = cluster.finkfs(&["stat", "ztf/raw/a.avro"]);
    assert!(
        texts(&stat).0.contains("150000 bytes"),
        "{:?}",
        texts(&stat)
    );

    let rm = cluster.finkfs(&["rm", "ztf/raw/a.avro"]);
    assert!(rm.status.success(), "{:?}", texts(&rm));
    let ls = cluster.finkfs(&["ls", "ztf/"]);
    assert!(
        ls.status.success() && ls.stdout.is_empty(),
        "{:?}",
        texts(&ls)
    );
}

#[test]
fn range_read_returns_exactly_the_bytes_asked_both_ends_included() {
    let Some(cluster) = OneNode::start() else {
        return;
    };
    let local = cluster.dir.path().join("f");
    let data: Vec<u8> = (0..5000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&local, &data).unwrap();
    let put = cluster.finkfs(&["put", local.to_str().unwrap(), "f"]);
    assert!(put.status.success(), "{:?}", texts(&put));
    let mid = cluster.finkfs(&["get", "f", "--range", "100-199"]);
    assert_eq!(mid.stdout, data[100..200]);
    let tail = cluster.finkfs(&["get", "f", "--range", "4990-"]);
    assert_eq!(tail.stdout, data[4990..]);
}

#[test]
fn missing_object_is_exit_1_and_writes_no_file() {
    let Some(cluster) = OneNode::start() else {
        return;
    };
    let target = cluster.dir.path().join("out");
    for args in [
        vec!["get", "no/such", target.to_str().unwrap()],
        vec!["stat", "no/such"],
        vec!["rm", "no/such"],
    ] {
        let output = cluster.finkfs(&args);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{args:?}: {:?}",
            texts(&output)
        );
        assert!(
            texts(&output).1.contains("no object at no/such"),
            "{args:?}"
        );
    }
    assert!(!target.exists(), "a failed get left a file");
    assert_eq!(
        cluster.finkfs(&["rm", "-f", "no/such"]).status.code(),
        Some(0)
    );
}

#[test]
fn recursive_put_stores_the_tree_and_reports_a_bad_file_with_exit_1() {
    let Some(cluster) = OneNode::start() else {
        return;
    };
    let tree = cluster.dir.path().join("tree");
    std::fs::create_dir_all(tree.join("day=14")).unwrap();
    for i in 0..30u32 {
        std::fs::write(
            tree.join(format!("day=14/{i}.avro")),
            vec![i as u8; 1000 + i as usize],
        )
        .unwrap();
    }
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(tree.join("big.parquet"), &big).unwrap();
    // A name that is not UTF-8 cannot be an object path: that file fails alone.
    use std::os::unix::ffi::OsStrExt;
    std::fs::write(tree.join(std::ffi::OsStr::from_bytes(b"bad\xff")), b"x").unwrap();

    let put = cluster.finkfs(&["put", "-r", tree.to_str().unwrap(), "night"]);
    let (stdout, stderr) = texts(&put);
    assert_eq!(put.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains(": 31 files,") && stdout.contains(", 1 failed"),
        "{stdout}"
    );
    assert!(stderr.contains("not UTF-8"), "{stderr}");

    let ls = cluster.finkfs(&["ls", "night/"]);
    assert_eq!(texts(&ls).0.lines().count(), 31);
    let got = cluster.finkfs(&["get", "night/big.parquet"]);
    assert_eq!(got.stdout, big);
    let got = cluster.finkfs(&["get", "night/day=14/7.avro"]);
    assert_eq!(got.stdout, vec![7u8; 1007]);
}

#[test]
fn status_of_a_healthy_cluster_exits_0_with_stable_json() {
    let Some(cluster) = OneNode::start() else {
        return;
    };
    let output = cluster.finkfs(&["status", "--json"]);
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    let status: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(status["leader_id"], 1);
    assert_eq!(status["healthy"], true);
    let members = status["members"].as_array().expect("members");
    assert_eq!(members.len(), 1);
    assert_eq!(members[0]["health"], "ok");
    assert_eq!(members[0]["client_addr"], cluster.node.client.as_str());
    for key in ["term", "commit_index", "last_log_index", "answered_by"] {
        assert!(status.get(key).is_some(), "{key} missing");
    }
    let table = cluster.finkfs(&["status"]);
    assert!(texts(&table).0.contains("HEALTH"), "{:?}", texts(&table));
}
