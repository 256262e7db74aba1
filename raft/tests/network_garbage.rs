//! Guards against a peer service that a garbage or hostile peer can crash,
//! wedge or fool: random bytes on the port, requests for groups the node
//! does not host, malformed messages, silent connections at shutdown, and a
//! peer that answers FetchBlock with bytes that are not the block.

mod network_support;

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use finkfs_raft::network::convert::{self, AppendEntriesRequest};
use finkfs_raft::network::proto::peer_client::PeerClient as GrpcClient;
use finkfs_raft::network::proto::peer_server::{Peer, PeerServer};
use finkfs_raft::network::proto::{self};
use finkfs_raft::network::{PeerChannels, PeerClient, PeerClientError, PeerOptions};
use finkfs_raft::types::{AppCommand, Entry, EntryPayload, LeaderId, LogId, Vote};
use futures_util::Stream;
use network_support::{start_cluster, wait_applied, wait_for_leader, write, TestNode, GROUP};
use openraft::vote::RaftLeaderId;
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tonic::{Code, Request, Response, Status, Streaming};

async fn grpc(addr: &str) -> GrpcClient<tonic::transport::Channel> {
    GrpcClient::connect(format!("http://{addr}"))
        .await
        .expect("connect")
}

fn vote_request(group_id: u64) -> proto::VoteRequest {
    proto::VoteRequest {
        group_id,
        vote: Some(convert::vote_to_proto(&Vote::new(1, 9))),
        last_log_id: None,
        leadership_transfer: false,
    }
}

fn append_message(group_id: u64, index: u64) -> proto::AppendRequest {
    let entry = Entry {
        log_id: LogId::new(LeaderId::new(1, 9), index),
        payload: EntryPayload::Normal(AppCommand(Bytes::from_static(b"k=v"))),
    };
    let request = AppendEntriesRequest {
        vote: Vote::new_committed(1, 9),
        prev_log_id: None,
        entries: vec![entry],
        leader_commit: None,
    };
    convert::split_append(group_id, &request)
        .expect("encode")
        .remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_on_the_peer_port_leave_the_cluster_serving() {
    let mut nodes = start_cluster(&[1, 2, 3]).await;
    let all = [0, 1, 2];
    let leader = wait_for_leader(&nodes, &all).await;
    let follower = (leader + 1) % 3;
    let mut rng = SmallRng::seed_from_u64(0x5eed);
    let mut garbage_connections = Vec::new();
    for round in 0..8 {
        let mut stream = TcpStream::connect(&nodes[follower].addr)
            .await
            .expect("connect");
        let mut bytes = vec![0u8; 1 << (8 + round)];
        rng.fill_bytes(&mut bytes);
        // The server may hang up mid-write: that is the point.
        let _ = stream.write_all(&bytes).await;
        garbage_connections.push(stream);
    }
    // Valid HTTP/2 preface followed by garbage frames.
    let mut stream = TcpStream::connect(&nodes[follower].addr)
        .await
        .expect("connect");
    let _ = stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\x09\x00\x00\x00\x00\x01")
        .await;
    garbage_connections.push(stream);

    let index = write(&nodes[leader], "after-garbage", "still-replicated").await;
    wait_applied(&nodes, &all, index).await;
    assert_eq!(
        nodes[follower]
            .map()
            .get("after-garbage")
            .map(String::as_str),
        Some("still-replicated")
    );
    let reply = grpc(&nodes[follower].addr)
        .await
        .vote(vote_request(GROUP.0))
        .await;
    assert!(reply.is_ok(), "the follower still answers votes: {reply:?}");
    drop(garbage_connections);
    for node in &mut nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_group_is_not_found() {
    let mut node = TestNode::start(1).await;
    let mut client = grpc(&node.addr).await;
    let status = client.vote(vote_request(99)).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(
        status.message().contains("group-99"),
        "{}",
        status.message()
    );
    let status = client
        .append_entries(append_message(99, 0))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let stream = futures_util::stream::iter(vec![append_message(99, 0)]);
    let status = client.stream_append(stream).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let fetch = proto::FetchBlockRequest {
        group_id: 99,
        hash: Bytes::from(vec![0u8; 32]),
    };
    assert_eq!(
        client.fetch_block(fetch).await.unwrap_err().code(),
        Code::NotFound
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_invalid_argument_and_the_node_keeps_serving() {
    let mut node = TestNode::start(1).await;
    let mut client = grpc(&node.addr).await;

    let mut gap = append_message(GROUP.0, 0);
    gap.entries[0].index = 5;
    let status = client.append_entries(gap).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status}");

    let mut garbage = append_message(GROUP.0, 0);
    garbage.entries[0].payload = Bytes::from_static(b"\x07garbage");
    let status = client.append_entries(garbage).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status}");

    let mut no_vote = vote_request(GROUP.0);
    no_vote.vote = None;
    assert_eq!(
        client.vote(no_vote).await.unwrap_err().code(),
        Code::InvalidArgument
    );

    // A stream whose second message is malformed: the first is answered,
    // then the stream ends with INVALID_ARGUMENT.
    let mut bad_second = append_message(GROUP.0, 1);
    bad_second.vote = None;
    let stream = futures_util::stream::iter(vec![append_message(GROUP.0, 0), bad_second]);
    let mut replies = client
        .stream_append(stream)
        .await
        .expect("stream opens")
        .into_inner();
    let first = replies
        .message()
        .await
        .expect("first reply")
        .expect("a reply");
    assert!(convert::append_reply_from_proto(first)
        .expect("decodes")
        .is_ok());
    let status = replies.message().await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status}");

    let short_hash = proto::FetchBlockRequest {
        group_id: GROUP.0,
        hash: Bytes::from_static(b"short"),
    };
    assert_eq!(
        client.fetch_block(short_hash).await.unwrap_err().code(),
        Code::InvalidArgument
    );

    let snapshot_without_header = proto::SnapshotChunk {
        group_id: GROUP.0,
        ..Default::default()
    };
    let stream = futures_util::stream::iter(vec![snapshot_without_header]);
    assert_eq!(
        client.install_snapshot(stream).await.unwrap_err().code(),
        Code::InvalidArgument
    );

    let reply = client.vote(vote_request(GROUP.0)).await;
    assert!(reply.is_ok(), "the node still answers: {reply:?}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_not_held_by_silent_connections() {
    let mut node = TestNode::start(1).await;
    let silent = TcpStream::connect(&node.addr).await.expect("connect");
    let mut half_preface = TcpStream::connect(&node.addr).await.expect("connect");
    half_preface
        .write_all(b"PRI * HTTP/2.0")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(50)).await;
    // stop() fails the test if the service is not gone within its grace.
    node.stop().await;
    drop((silent, half_preface));
}

/// A peer that answers FetchBlock with bytes that are not the block.
struct LyingPeer;

type Replies = Pin<Box<dyn Stream<Item = Result<proto::AppendReply, Status>> + Send>>;

#[tonic::async_trait]
impl Peer for LyingPeer {
    async fn vote(
        &self,
        _: Request<proto::VoteRequest>,
    ) -> Result<Response<proto::VoteReply>, Status> {
        Err(Status::unimplemented("lying peer"))
    }
    async fn pre_vote(
        &self,
        _: Request<proto::VoteRequest>,
    ) -> Result<Response<proto::VoteReply>, Status> {
        Err(Status::unimplemented("lying peer"))
    }
    async fn append_entries(
        &self,
        _: Request<proto::AppendRequest>,
    ) -> Result<Response<proto::AppendReply>, Status> {
        Err(Status::unimplemented("lying peer"))
    }
    type StreamAppendStream = Replies;
    async fn stream_append(
        &self,
        _: Request<Streaming<proto::AppendRequest>>,
    ) -> Result<Response<Replies>, Status> {
        Err(Status::unimplemented("lying peer"))
    }
    async fn install_snapshot(
        &self,
        _: Request<Streaming<proto::SnapshotChunk>>,
    ) -> Result<Response<proto::SnapshotReply>, Status> {
        Err(Status::unimplemented("lying peer"))
    }
    async fn transfer_leader(
        &self,
        _: Request<proto::TransferLeaderRequest>,
    ) -> Result<Response<proto::TransferLeaderReply>, Status> {
        Err(Status::unimplemented("lying peer"))
    }
    async fn fetch_block(
        &self,
        _: Request<proto::FetchBlockRequest>,
    ) -> Result<Response<proto::FetchBlockReply>, Status> {
        Ok(Response::new(proto::FetchBlockReply {
            found: true,
            data: Bytes::from_static(b"forged"),
        }))
    }
    async fn held_log(
        &self,
        _: Request<proto::HeldLogRequest>,
    ) -> Result<Response<proto::HeldLogReply>, Status> {
        Err(Status::unimplemented("lying peer"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_that_fails_its_hash_on_receipt_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address").to_string();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(PeerServer::new(LyingPeer))
            .serve_with_incoming(incoming),
    );
    let client = PeerClient::new(PeerChannels::new(PeerOptions::default()));
    let hash = *blake3::hash(b"the real block").as_bytes();
    let result = client.fetch_blocks(&addr, GROUP, &[hash]).await;
    assert!(
        matches!(result, Err(PeerClientError::CorruptBlock { .. })),
        "{result:?}"
    );
    server.abort();
}
