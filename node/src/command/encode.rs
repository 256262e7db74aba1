//! Encoding of commands (layout in `mod.rs`).

use bytes::Bytes;

use super::{
    body_len, Block, Command, COMMAND_MAGIC, COMMAND_VERSION, KIND_BATCH, KIND_DELETE,
    KIND_PUT_BLOCKS, KIND_PUT_OBJECT, PREAMBLE_BYTES,
};

/// Appends bytes, hashing all of them but block data.
struct Writer {
    bytes: Vec<u8>,
    check: blake3::Hasher,
}

impl Writer {
    fn meta(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
        self.check.update(bytes);
    }

    fn u32(&mut self, value: usize) {
        let value = u32::try_from(value).expect("command field fits in u32");
        self.meta(&value.to_le_bytes());
    }

    fn data(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }
}

pub(super) fn encode(command: &Command) -> Bytes {
    let len = command.encoded_len();
    let mut writer = Writer {
        bytes: Vec::with_capacity(len),
        check: blake3::Hasher::new(),
    };
    writer.meta(&COMMAND_MAGIC);
    writer.meta(&COMMAND_VERSION.to_le_bytes());
    body(&mut writer, command, true);
    assert_eq!(writer.bytes.len(), PREAMBLE_BYTES + body_len(command));
    let check = writer.check.finalize();
    writer.bytes.extend_from_slice(check.as_bytes());
    assert_eq!(writer.bytes.len(), len);
    let bytes = Bytes::from(writer.bytes);
    debug_assert_eq!(Command::decode(&bytes).as_ref(), Ok(command));
    bytes
}

fn body(writer: &mut Writer, command: &Command, top_level: bool) {
    match command {
        Command::PutObject {
            path,
            manifest,
            inline_blocks,
        } => {
            let manifest = manifest.encode();
            writer.u32(KIND_PUT_OBJECT as usize);
            writer.u32(path.len());
            writer.u32(manifest.len());
            writer.u32(inline_blocks.len());
            writer.meta(path.as_bytes());
            writer.meta(&manifest);
            blocks(writer, inline_blocks);
        }
        Command::PutBlocks { blocks: list } => {
            writer.u32(KIND_PUT_BLOCKS as usize);
            writer.u32(list.len());
            blocks(writer, list);
        }
        Command::Delete { path } => {
            writer.u32(KIND_DELETE as usize);
            writer.u32(path.len());
            writer.meta(path.as_bytes());
        }
        Command::Batch(commands) => {
            assert!(top_level, "a batch inside a batch is never encoded");
            writer.u32(KIND_BATCH as usize);
            writer.u32(commands.len());
            for command in commands {
                body(writer, command, false);
            }
        }
    }
}

fn blocks(writer: &mut Writer, blocks: &[Block]) {
    for block in blocks {
        debug_assert_eq!(
            blake3::hash(&block.data).as_bytes(),
            &block.hash,
            "block with a wrong hash"
        );
        writer.meta(&block.hash);
        writer.u32(block.data.len());
        writer.data(&block.data);
    }
}
