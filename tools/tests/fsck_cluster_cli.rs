//! Guards against an online check that cannot tell a damaged replica from a
//! lost object: three real nodes, one object damaged on one member only
//! (CORRUPT: an intact copy exists), one damaged on every member (MISSING),
//! one intact everywhere; `finkfs --cluster ADDR fsck` must name each, with
//! the node and the block, and exit 1.

mod cli_support;

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use cli_support::{eventually, finkfs, node_bin, run, texts, NodeProcess};

/// The scrubber off: it would repair the damage before the check sees it.
const NO_SCRUB: &[&str] = &["--scrub-period-s", "0"];

fn object(seed: u8) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(80_000);
    let mut state = u64::from(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while bytes.len() < 80_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes
}

/// Flips one byte of `data`'s stored copy in the packs under `dir`.
fn damage(dir: &Path, data: &[u8]) {
    let needle = &data[1000..1064];
    let blocks = dir.join("groups/0/blocks");
    for entry in std::fs::read_dir(&blocks).expect("pack directory") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("read pack");
        if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("open pack");
            file.write_all_at(&[bytes[at] ^ 0x40], at as u64)
                .expect("flip a byte");
            file.sync_all().expect("sync");
            return;
        }
    }
    panic!(
        "the object's bytes are in no pack under {}",
        blocks.display()
    );
}

fn fsck_cluster(addr: &str) -> (Option<i32>, serde_json::Value, String) {
    let output = finkfs()
        .args(["--cluster", addr, "fsck", "--json"])
        .output()
        .expect("run finkfs fsck");
    let (stdout, stderr) = texts(&output);
    let report = serde_json::from_str(&stdout).unwrap_or_default();
    (output.status.code(), report, format!("{stdout}{stderr}"))
}

#[test]
fn one_damaged_replica_is_corrupt_and_every_replica_damaged_is_missing() {
    let Some(bin) = node_bin() else { return };
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes: Vec<NodeProcess> = dirs
        .iter()
        .enumerate()
        .map(|(i, dir)| NodeProcess::start_with(&bin, i as u64 + 1, dir.path(), NO_SCRUB))
        .collect();
    let members: Vec<String> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{}={},{}", i + 1, n.peer, n.client))
        .collect();
    let mut init = vec!["--cluster", nodes[0].client.as_str(), "cluster", "init"];
    init.extend(members.iter().map(String::as_str));
    let output = run(&init);
    assert!(output.status.success(), "init: {:?}", texts(&output));

    let files = tempfile::tempdir().unwrap();
    let objects: Vec<(String, Vec<u8>)> = ["ok", "one", "all"]
        .iter()
        .enumerate()
        .map(|(i, name)| (format!("ztf/{name}.avro"), object(i as u8 + 1)))
        .collect();
    for (path, data) in &objects {
        let file = files.path().join(path.replace('/', "_"));
        std::fs::write(&file, data).unwrap();
        let put = run(&[
            "--cluster",
            &nodes[0].client,
            "put",
            file.to_str().unwrap(),
            path,
        ]);
        assert!(put.status.success(), "put: {:?}", texts(&put));
    }
    let addr = nodes[0].client.clone();
    let everywhere = eventually(Duration::from_secs(20), || {
        let (code, report, _) = fsck_cluster(&addr);
        code == Some(0) && report["healthy"] == 3
    });
    assert!(everywhere, "{}", fsck_cluster(&addr).2);

    damage(dirs[1].path(), &objects[1].1);
    for dir in &dirs {
        damage(dir.path(), &objects[2].1);
    }
    let (code, report, text) = fsck_cluster(&addr);

    assert_eq!(code, Some(1), "{text}");
    assert_eq!(report["status"], "CORRUPT", "{text}");
    assert_eq!(report["healthy"], 1, "{text}");
    assert_eq!(report["corrupt"], 1, "{text}");
    assert_eq!(report["missing"], 1, "{text}");
    let findings = report["findings"].as_array().unwrap();
    let one = findings
        .iter()
        .find(|f| f["path"] == "ztf/one.avro")
        .unwrap();
    assert_eq!(one["finding"], "corrupt", "{text}");
    let damaged: Vec<&serde_json::Value> = one["copies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["state"] == "damaged")
        .collect();
    assert_eq!(damaged.len(), 1, "{text}");
    assert_eq!(damaged[0]["node"], 2, "{text}");
    assert!(
        damaged[0]["detail"].as_str().unwrap().contains("block"),
        "{text}"
    );
    let all = findings
        .iter()
        .find(|f| f["path"] == "ztf/all.avro")
        .unwrap();
    assert_eq!(all["finding"], "missing", "{text}");

    let plain = finkfs()
        .args(["--cluster", &addr, "fsck"])
        .output()
        .unwrap();
    let (stdout, _) = texts(&plain);
    assert!(stdout.contains("CORRUPT ztf/one.avro"), "{stdout}");
    assert!(stdout.contains("MISSING ztf/all.avro"), "{stdout}");
    assert!(
        stdout.trim_end().ends_with("The cluster is CORRUPT"),
        "{stdout}"
    );
}

#[test]
fn fsck_without_a_data_dir_or_a_cluster_is_a_usage_error() {
    let output = finkfs().arg("fsck").output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{:?}", texts(&output));
}
