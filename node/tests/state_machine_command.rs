//! Guards against a command or response codec that lets a damaged entry
//! through as a different command, panics or over-allocates on garbage, or
//! splits an object into entries larger than the journal takes.

use bytes::Bytes;
use finkfs_node::command::{
    plan_put, split_object, Block, Command, CommandDecodeError, Outcome, RejectKind, Rejection,
    Response, ENTRY_BYTES_MAX,
};
use proptest::prelude::*;

fn sample_batch() -> Command {
    let (manifest, blocks) = split_object(&Bytes::from_static(b"an alert of a few bytes"), 8);
    Command::Batch(vec![
        Command::PutObject {
            path: "ztf/raw/a.avro".to_string(),
            manifest,
            inline_blocks: blocks,
        },
        Command::PutBlocks {
            blocks: vec![Block::new(Bytes::from_static(b"ahead"))],
        },
        Command::Delete {
            path: "ztf/raw/old.avro".to_string(),
        },
    ])
}

#[test]
fn every_kind_of_command_round_trips() {
    let (empty_manifest, _) = split_object(&Bytes::new(), 4096);
    let commands = [
        sample_batch(),
        Command::PutObject {
            path: "empty".to_string(),
            manifest: empty_manifest,
            inline_blocks: Vec::new(),
        },
        Command::PutBlocks { blocks: Vec::new() },
        Command::Delete {
            path: String::new(),
        },
        Command::Batch(Vec::new()),
    ];
    for command in commands {
        let bytes = command.encode();
        assert_eq!(bytes.len(), command.encoded_len());
        assert_eq!(Command::decode(&bytes), Ok(command));
    }
}

#[test]
fn decoded_block_data_shares_the_entry_buffer() {
    let command = Command::PutBlocks {
        blocks: vec![Block::new(Bytes::from(vec![3u8; 10_000]))],
    };
    let bytes = command.encode();
    let Ok(Command::PutBlocks { blocks }) = Command::decode(&bytes) else {
        panic!("decodes");
    };
    let range = bytes.as_ptr_range();
    assert!(
        range.contains(&blocks[0].data.as_ptr()),
        "no copy of block data"
    );
}

#[test]
fn every_flipped_bit_of_a_command_is_detected() {
    let bytes = sample_batch().encode();
    for bit in 0..bytes.len() * 8 {
        let mut damaged = bytes.to_vec();
        damaged[bit / 8] ^= 1 << (bit % 8);
        let result = Command::decode(&Bytes::from(damaged));
        assert!(result.is_err(), "bit {bit} went undetected");
    }
}

#[test]
fn flipped_block_data_is_caught_by_the_block_hash() {
    let bytes = sample_batch().encode();
    // The data of the PutBlocks element, found by its content.
    let at = bytes.windows(5).position(|w| w == b"ahead").unwrap();
    let mut damaged = bytes.to_vec();
    damaged[at] ^= 0x20;
    assert!(matches!(
        Command::decode(&Bytes::from(damaged)),
        Err(CommandDecodeError::BlockHashMismatch { .. })
    ));
}

#[test]
fn every_truncation_of_a_command_is_an_error() {
    let bytes = sample_batch().encode();
    for len in 0..bytes.len() {
        assert!(Command::decode(&bytes.slice(..len)).is_err(), "len {len}");
    }
}

/// Bytes with a valid check around `body`: only framing checks can
/// refuse them.
fn sealed(body: &[u8]) -> Bytes {
    let mut bytes = b"FCMD".to_vec();
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend_from_slice(body);
    let check = blake3::hash(&bytes);
    bytes.extend_from_slice(check.as_bytes());
    Bytes::from(bytes)
}

fn words(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

#[test]
fn well_checked_but_malformed_commands_are_refused_without_allocation() {
    type Expect = fn(&CommandDecodeError) -> bool;
    let cases: [(&str, Vec<u8>, Expect); 5] = [
        ("huge block count", words(&[2, u32::MAX]), |e| {
            matches!(e, CommandDecodeError::CountTooLarge { .. })
        }),
        ("huge batch count", words(&[4, u32::MAX]), |e| {
            matches!(e, CommandDecodeError::CountTooLarge { .. })
        }),
        ("nested batch", words(&[4, 1, 4, 0]), |e| {
            matches!(e, CommandDecodeError::NestedBatch { .. })
        }),
        ("unknown kind", words(&[77, 0]), |e| {
            matches!(e, CommandDecodeError::UnknownKind { .. })
        }),
        ("path past the end", words(&[3, 1000]), |e| {
            matches!(e, CommandDecodeError::Truncated { .. })
        }),
    ];
    for (name, body, expected) in cases {
        let error = Command::decode(&sealed(&body)).expect_err(name);
        assert!(expected(&error), "{name}: {error}");
    }
    let mut trailing = words(&[3, 1]);
    trailing.extend_from_slice(b"ab");
    assert!(matches!(
        Command::decode(&sealed(&trailing)),
        Err(CommandDecodeError::TrailingBytes { .. })
    ));
    let mut not_utf8 = words(&[3, 2]);
    not_utf8.extend_from_slice(&[0xff, 0xfe]);
    assert!(matches!(
        Command::decode(&sealed(&not_utf8)),
        Err(CommandDecodeError::PathNotUtf8 { .. })
    ));
}

proptest! {
    #[test]
    fn garbage_never_decodes_nor_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        prop_assert!(Command::decode(&Bytes::from(bytes.clone())).is_err());
        let _ = Response::decode(&bytes);
    }

    #[test]
    fn garbage_after_a_valid_preamble_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut bytes = b"FCMD".to_vec();
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&tail);
        prop_assert!(Command::decode(&Bytes::from(bytes)).is_err());
        let _ = Command::decode(&sealed(&tail));
    }
}

fn sample_responses() -> Vec<Response> {
    vec![
        Response::Single(Outcome::Put {
            object_len: 77,
            object_hash: [9; 32],
            replaced: true,
        }),
        Response::Single(Outcome::NotFound),
        Response::Batch(vec![
            Outcome::Blocks { new: 3, known: 1 },
            Outcome::Deleted { object_len: 5 },
            Outcome::Rejected(Rejection {
                kind: RejectKind::MissingBlocks,
                reason: "2 blocks of \"x\" are missing".to_string(),
            }),
        ]),
        Response::Batch(Vec::new()),
    ]
}

#[test]
fn responses_round_trip_and_truncations_are_errors() {
    for response in sample_responses() {
        let bytes = response.encode();
        assert_eq!(Response::decode(&bytes), Ok(response));
        for len in 0..bytes.len() {
            assert!(Response::decode(&bytes[..len]).is_err(), "len {len}");
        }
    }
}

#[test]
fn response_with_a_huge_count_or_bad_values_is_refused() {
    let mut huge = sample_responses()[1].encode();
    huge[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(Response::decode(&huge).is_err());
    let mut bad_flag = sample_responses()[0].encode();
    let last = bad_flag.len() - 4;
    bad_flag[last] = 2;
    assert!(Response::decode(&bad_flag).is_err());
    let mut single_with_two = sample_responses()[2].encode();
    single_with_two[8] = 1;
    assert!(Response::decode(&single_with_two).is_err());
}

#[test]
fn plan_keeps_small_objects_whole_and_bounds_every_entry() {
    let small = plan_put("a", Bytes::from(vec![1u8; 1000]), 4096, 16 * 1024);
    assert_eq!(small.commands.len(), 1);
    assert!(
        matches!(&small.commands[0], Command::PutObject { inline_blocks, .. } if inline_blocks.len() == 1)
    );

    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 13) as u8).collect();
    let plan = plan_put("b", Bytes::from(data.clone()), 4096, 16 * 1024);
    assert!(plan.commands.len() > 1);
    for command in &plan.commands {
        assert!(
            command.encoded_len() <= 16 * 1024,
            "{}",
            command.encoded_len()
        );
    }
    let Some(Command::PutObject {
        manifest,
        inline_blocks,
        ..
    }) = plan.commands.last()
    else {
        panic!("the last command stores the object");
    };
    assert!(inline_blocks.is_empty());
    assert_eq!(manifest, &plan.manifest);
    assert_eq!(manifest.object_hash, *blake3::hash(&data).as_bytes());
    // A repeating pattern: blocks recur, each is sent once.
    let sent: usize = plan.commands[..plan.commands.len() - 1]
        .iter()
        .map(|c| match c {
            Command::PutBlocks { blocks } => blocks.len(),
            other => panic!("unexpected {other:?}"),
        })
        .sum();
    let distinct: std::collections::HashSet<_> = manifest.blocks.iter().map(|b| b.hash).collect();
    assert_eq!(sent, distinct.len());
    assert!(sent < manifest.blocks.len());
}

#[test]
fn default_entry_limit_fits_a_full_block() {
    let block = Bytes::from(vec![0xabu8; finkfs_node::command::BLOCK_BYTES as usize]);
    let plan = plan_put(
        "big",
        block,
        finkfs_node::command::BLOCK_BYTES,
        ENTRY_BYTES_MAX,
    );
    assert_eq!(plan.commands.len(), 1);
    assert!(plan.commands[0].encoded_len() <= ENTRY_BYTES_MAX);
}
