//! Guards against a state machine that answers a client "stored" for an
//! object it cannot serve, stores part of an object, lets replicas decide
//! differently, or skips a damaged command instead of stopping.

mod sm_support;

use std::collections::BTreeMap;

use bytes::Bytes;
use finkfs_node::command::{plan_put, split_object, Block, Command, Outcome, RejectKind, Response};
use finkfs_node::state_machine::StateMachineError;
use finkfs_raft::types::{AppCommand, Entry, EntryPayload, StoredMembership};
use finkfs_simdisk::SimDisk;
use futures_util::stream;
use openraft::storage::RaftStateMachine;
use sm_support::*;

fn single(response: &Response) -> &Outcome {
    match response {
        Response::Single(outcome) => outcome,
        other => panic!("expected one outcome, got {other:?}"),
    }
}

#[tokio::test]
async fn small_object_put_inline_is_readable_and_answered_with_its_hash() {
    let disk = SimDisk::new(1).disk_ref();
    let sm = open_plain(&disk);
    let data = Bytes::from(vec![7u8; 5000]);
    let plan = plan_put(
        "ztf/a.avro",
        data.clone(),
        TEST_BLOCK_BYTES,
        TEST_ENTRY_BYTES_MAX,
    );
    assert_eq!(
        plan.commands.len(),
        1,
        "a small object travels in one entry"
    );
    let responses = sm
        .apply_entries(entries_for(1, &plan.commands))
        .await
        .unwrap();
    let response = &decode_responses(&responses)[0];
    assert_eq!(
        single(response),
        &Outcome::Put {
            object_len: 5000,
            object_hash: *blake3::hash(&data).as_bytes(),
            replaced: false,
        }
    );
    assert_eq!(sm.reader().get("ztf/a.avro").unwrap(), data);
}

#[tokio::test]
async fn large_object_travels_as_put_blocks_then_put_object() {
    let disk = SimDisk::new(2).disk_ref();
    let sm = open_plain(&disk);
    let data = Bytes::from((0..100_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    let plan = plan_put("big", data.clone(), TEST_BLOCK_BYTES, TEST_ENTRY_BYTES_MAX);
    assert!(plan.commands.len() > 2);
    for command in &plan.commands {
        assert!(command.encoded_len() <= TEST_ENTRY_BYTES_MAX);
    }
    let responses = sm
        .apply_entries(entries_for(1, &plan.commands))
        .await
        .unwrap();
    let outcomes = decode_responses(&responses);
    let last = outcomes.last().unwrap();
    assert!(matches!(
        single(last),
        Outcome::Put {
            object_len: 100_000,
            ..
        }
    ));
    for response in &outcomes[..outcomes.len() - 1] {
        assert!(matches!(single(response), Outcome::Blocks { known: 0, .. }));
    }
    assert_eq!(sm.reader().get("big").unwrap(), data);
    assert_eq!(
        sm.reader().get_range("big", 4000, 9000).unwrap(),
        data[4000..13_000]
    );
}

#[tokio::test]
async fn put_object_whose_blocks_are_absent_is_rejected_and_changes_nothing() {
    let disk = SimDisk::new(3).disk_ref();
    let sm = open_plain(&disk);
    let data = Bytes::from(vec![9u8; 3 * TEST_BLOCK_BYTES as usize + 1]);
    let (manifest, _) = split_object(&data, TEST_BLOCK_BYTES);
    let command = Command::PutObject {
        path: "orphan".to_string(),
        manifest,
        inline_blocks: Vec::new(),
    };
    let responses = sm.apply_entries(vec![normal(1, &command)]).await.unwrap();
    match single(&decode_responses(&responses)[0]) {
        Outcome::Rejected(r) => assert_eq!(r.kind, RejectKind::MissingBlocks),
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(sm.reader().stat("orphan").unwrap().is_none());
    // The entry still counts as applied: every replica refused it alike.
    let mut sm = sm;
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(1)));
}

#[tokio::test]
async fn bad_paths_and_mismatched_inline_blocks_are_rejected() {
    let disk = SimDisk::new(4).disk_ref();
    let sm = open_plain(&disk);
    let data = Bytes::from_static(b"alert");
    let (manifest, blocks) = split_object(&data, TEST_BLOCK_BYTES);
    let bad_path = Command::PutObject {
        path: "a/../b".to_string(),
        manifest: manifest.clone(),
        inline_blocks: blocks,
    };
    let stranger = Block::new(Bytes::from_static(b"not in the manifest"));
    let mismatch = Command::PutObject {
        path: "ok".to_string(),
        manifest,
        inline_blocks: vec![stranger],
    };
    let delete_bad = Command::Delete {
        path: "/abs".to_string(),
    };
    let entries = entries_for(1, &[bad_path, mismatch, delete_bad]);
    let outcomes = decode_responses(&sm.apply_entries(entries).await.unwrap());
    let kinds: Vec<RejectKind> = outcomes
        .iter()
        .map(|r| match single(r) {
            Outcome::Rejected(r) => r.kind,
            other => panic!("expected a rejection, got {other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            RejectKind::BadPath,
            RejectKind::InlineMismatch,
            RejectKind::BadPath
        ]
    );
    assert!(sm.reader().list("", None, 10).unwrap().is_empty());
}

#[tokio::test]
async fn batch_answers_each_element_and_a_refused_one_spares_the_others() {
    let disk = SimDisk::new(5).disk_ref();
    let sm = open_plain(&disk);
    let mut elements = plan_put(
        "one",
        Bytes::from_static(b"1"),
        TEST_BLOCK_BYTES,
        TEST_ENTRY_BYTES_MAX,
    )
    .commands;
    elements.push(Command::Delete {
        path: "never-there".to_string(),
    });
    elements.push(Command::Delete {
        path: "bad//path".to_string(),
    });
    elements.extend(
        plan_put(
            "two",
            Bytes::from_static(b"22"),
            TEST_BLOCK_BYTES,
            TEST_ENTRY_BYTES_MAX,
        )
        .commands,
    );
    elements.push(Command::Delete {
        path: "one".to_string(),
    });
    let responses = sm
        .apply_entries(vec![normal(1, &Command::Batch(elements))])
        .await
        .unwrap();
    let Response::Batch(outcomes) = &decode_responses(&responses)[0] else {
        panic!("a batch gets a batch response");
    };
    assert_eq!(outcomes.len(), 5);
    assert!(matches!(outcomes[0], Outcome::Put { object_len: 1, .. }));
    assert_eq!(outcomes[1], Outcome::NotFound);
    assert!(matches!(&outcomes[2], Outcome::Rejected(r) if r.kind == RejectKind::BadPath));
    assert!(matches!(outcomes[3], Outcome::Put { object_len: 2, .. }));
    assert_eq!(outcomes[4], Outcome::Deleted { object_len: 1 });
    let expected = BTreeMap::from([("two".to_string(), Bytes::from_static(b"22"))]);
    assert_holds(&sm.reader(), &expected, "after the batch");
}

#[tokio::test]
async fn replacing_and_deleting_keep_shared_blocks_referenced() {
    let disk = SimDisk::new(6).disk_ref();
    let sm = open_plain(&disk);
    let shared = Bytes::from(vec![1u8; 2 * TEST_BLOCK_BYTES as usize]);
    let mut commands = Vec::new();
    for path in ["a", "b"] {
        commands.extend(
            plan_put(path, shared.clone(), TEST_BLOCK_BYTES, TEST_ENTRY_BYTES_MAX).commands,
        );
    }
    commands.extend(
        plan_put(
            "a",
            Bytes::from_static(b"new"),
            TEST_BLOCK_BYTES,
            TEST_ENTRY_BYTES_MAX,
        )
        .commands,
    );
    commands.push(Command::Delete {
        path: "a".to_string(),
    });
    let outcomes = decode_responses(&sm.apply_entries(entries_for(1, &commands)).await.unwrap());
    assert!(matches!(
        single(&outcomes[2]),
        Outcome::Put { replaced: true, .. }
    ));
    assert_eq!(single(&outcomes[3]), &Outcome::Deleted { object_len: 3 });
    let reader = sm.reader();
    assert_eq!(reader.get("b").unwrap(), shared);
    let block = reader.stat("b").unwrap().unwrap().blocks[0];
    let entry = reader.index().block_location(&block.hash).unwrap().unwrap();
    assert_eq!(entry.refs, 2, "object b lists the same block twice");
}

#[tokio::test]
async fn membership_and_applied_log_id_are_stored_together() {
    let disk = SimDisk::new(7).disk_ref();
    let mut sm = open_plain(&disk);
    let entries = vec![blank(1), membership_entry(2, &[1, 2, 3]), blank(3)];
    let stream = stream::iter(entries.into_iter().map(|e| Ok((e, None))));
    sm.apply(stream).await.unwrap();
    let (applied, stored) = sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(3)));
    assert_eq!(
        stored,
        StoredMembership::new(Some(log_id(2)), membership(&[1, 2, 3]))
    );
    sm.sync().await.unwrap();
    drop(sm);
    let mut sm = open_plain(&disk);
    assert_eq!(sm.applied_state().await.unwrap(), (applied, stored));
}

#[tokio::test]
async fn damaged_command_stops_the_state_machine_and_applies_nothing() {
    let disk = SimDisk::new(8).disk_ref();
    let sm = open_plain(&disk);
    let good = plan_put(
        "good",
        Bytes::from_static(b"ok"),
        TEST_BLOCK_BYTES,
        TEST_ENTRY_BYTES_MAX,
    )
    .commands;
    sm.apply_entries(entries_for(1, &good)).await.unwrap();
    let command = plan_put(
        "x",
        Bytes::from_static(b"payload"),
        TEST_BLOCK_BYTES,
        TEST_ENTRY_BYTES_MAX,
    )
    .commands[0]
        .encode();
    // One bit of the path, as a flaky link or a bad sector might flip it.
    let mut damaged = command.to_vec();
    damaged[20] ^= 0x04;
    let entry = Entry {
        log_id: log_id(2),
        payload: EntryPayload::Normal(AppCommand(Bytes::from(damaged))),
    };
    let error = sm.apply_entries(vec![entry]).await.unwrap_err();
    assert!(
        matches!(error, StateMachineError::CorruptCommand { .. }),
        "{error}"
    );
    assert!(error.is_corruption());
    let mut sm = sm;
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(1)));
    assert!(sm.reader().stat("x").unwrap().is_none());
}

#[tokio::test]
async fn entry_at_or_below_the_applied_index_is_refused() {
    let disk = SimDisk::new(9).disk_ref();
    let sm = open_plain(&disk);
    sm.apply_entries(vec![blank(5)]).await.unwrap();
    let error = sm.apply_entries(vec![blank(5)]).await.unwrap_err();
    assert!(
        matches!(error, StateMachineError::OutOfOrder { .. }),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_see_whole_objects_while_apply_replaces_them() {
    let disk = SimDisk::new(10).disk_ref();
    let sm = open_plain(&disk);
    let versions: Vec<Bytes> = (0..20u8)
        .map(|v| Bytes::from(vec![v; 5 * TEST_BLOCK_BYTES as usize + v as usize]))
        .collect();
    let first = plan_put(
        "hot",
        versions[0].clone(),
        TEST_BLOCK_BYTES,
        TEST_ENTRY_BYTES_MAX,
    )
    .commands;
    let mut next = 1 + first.len() as u64;
    sm.apply_entries(entries_for(1, &first)).await.unwrap();
    let reader = sm.reader();
    let known = versions.clone();
    let readers = std::thread::spawn(move || {
        for _ in 0..300 {
            let got = reader
                .get("hot")
                .expect("a reader never fails during apply");
            assert!(
                known.iter().any(|v| v[..] == got[..]),
                "a torn object was read"
            );
        }
    });
    for version in &versions[1..] {
        let commands = plan_put(
            "hot",
            version.clone(),
            TEST_BLOCK_BYTES,
            TEST_ENTRY_BYTES_MAX,
        )
        .commands;
        sm.apply_entries(entries_for(next, &commands))
            .await
            .unwrap();
        next += commands.len() as u64;
    }
    readers.join().unwrap();
    assert_eq!(sm.reader().get("hot").unwrap(), versions[19]);
}

#[tokio::test]
async fn put_blocks_answers_how_many_blocks_were_new() {
    let disk = SimDisk::new(11).disk_ref();
    let sm = open_plain(&disk);
    let a = Block::new(Bytes::from_static(b"a"));
    let b = Block::new(Bytes::from_static(b"b"));
    let first = Command::PutBlocks {
        blocks: vec![a.clone()],
    };
    let second = Command::PutBlocks { blocks: vec![a, b] };
    let outcomes = decode_responses(
        &sm.apply_entries(entries_for(1, &[first, second]))
            .await
            .unwrap(),
    );
    assert_eq!(single(&outcomes[0]), &Outcome::Blocks { new: 1, known: 0 });
    assert_eq!(single(&outcomes[1]), &Outcome::Blocks { new: 1, known: 1 });
}
