//! Guards against a simulated network that does not behave like one, or
//! does not replay: messages reordered only by their drawn delays, a
//! dropped request or reply sent again as TCP does (late, not lost, until
//! the keepalive gives up), powered-off hosts deaf and mute, snapshot
//! chunks in order with a lost chunk resetting the stream, and the same
//! seed giving the same history.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use finkfs_raft::network::{
    proto, IncomingChunks, PeerEndpoint, PeerOptions, PeerReply, PeerRequest, PeerTransport,
};
use finkfs_sim::{LinkFaults, SimNet, SimTransport};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use tonic::{Code, Status};

/// Long enough for any delay a `lan` link draws.
const PATIENCE: Duration = Duration::from_secs(5);

/// An endpoint that records what reaches it: FetchBlock requests by the
/// first byte of their hash, snapshot chunks by offset.
#[derive(Default)]
struct Records {
    requests: Mutex<Vec<u8>>,
    chunks: Mutex<Vec<u64>>,
    stream_errors: Mutex<Vec<Code>>,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Records>);

impl std::ops::Deref for Recorder {
    type Target = Records;

    fn deref(&self) -> &Records {
        &self.0
    }
}

impl PeerEndpoint for Recorder {
    fn handle_unary(&self, request: PeerRequest) -> BoxFuture<'static, Result<PeerReply, Status>> {
        let PeerRequest::FetchBlock(request) = request else {
            return async { Err(Status::unimplemented("only FetchBlock")) }.boxed();
        };
        self.requests.lock().unwrap().push(request.hash[0]);
        let reply = proto::FetchBlockReply {
            found: true,
            data: request.hash,
        };
        async move { Ok(PeerReply::FetchBlock(reply)) }.boxed()
    }

    fn handle_install_snapshot(
        &self,
        mut chunks: IncomingChunks,
    ) -> BoxFuture<'static, Result<proto::SnapshotReply, Status>> {
        let me = self.clone();
        async move {
            while let Some(chunk) = chunks.next().await {
                match chunk {
                    Ok(chunk) => me.chunks.lock().unwrap().push(chunk.offset),
                    Err(status) => {
                        me.stream_errors.lock().unwrap().push(status.code());
                        return Err(status);
                    }
                }
            }
            Ok(proto::SnapshotReply { vote: None })
        }
        .boxed()
    }
}

fn fetch(n: u8) -> PeerRequest {
    PeerRequest::FetchBlock(proto::FetchBlockRequest {
        group_id: 0,
        hash: Bytes::from(vec![n; 32]),
    })
}

/// A network with a caller `a` and a recording host `b`.
fn two_hosts(seed: u64, faults: LinkFaults) -> (SimNet, SimTransport, Recorder) {
    let net = SimNet::new(seed, faults);
    let recorder = Recorder::default();
    net.attach("a", Arc::new(Recorder::default()), None);
    net.attach("b", Arc::new(recorder.clone()), None);
    let transport = SimTransport::new(net.clone(), "a", PeerOptions::default());
    (net, transport, recorder)
}

/// Sends requests 0..n at once and returns the order they reached `b`.
async fn arrival_order(seed: u64, faults: LinkFaults, n: u8) -> (Vec<u8>, Vec<String>) {
    let (net, transport, recorder) = two_hosts(seed, faults);
    let calls = (0..n).map(|i| transport.unary("b", fetch(i)));
    let replies = futures_util::future::join_all(calls).await;
    for reply in replies {
        assert!(matches!(reply, Ok(PeerReply::FetchBlock(_))));
    }
    let order = recorder.requests.lock().unwrap().clone();
    let trace = net.events().iter().map(ToString::to_string).collect();
    (order, trace)
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn perfect_link_delivers_in_sending_order() {
    let (order, _) = arrival_order(1, LinkFaults::perfect(), 50).await;
    assert_eq!(order, (0..50).collect::<Vec<u8>>());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn independent_delays_reorder_and_the_same_seed_replays() {
    let (first, first_trace) = arrival_order(7, LinkFaults::lan(), 50).await;
    let (again, again_trace) = arrival_order(7, LinkFaults::lan(), 50).await;
    let (other, _) = arrival_order(8, LinkFaults::lan(), 50).await;
    let mut sorted = first.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..50).collect::<Vec<u8>>(), "each arrived once");
    assert_ne!(first, sorted, "delays reorder messages");
    assert_eq!(first, again, "same seed, same order");
    assert_eq!(first_trace, again_trace, "same seed, same trace");
    assert_ne!(first, other, "another seed, another order");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropped_requests_are_sent_again_and_a_short_deadline_times_out() {
    let (net, transport, recorder) = two_hosts(3, LinkFaults::lan().dropping(1.0));
    let call = tokio::time::timeout(PATIENCE, transport.unary("b", fetch(1))).await;
    assert!(call.is_err(), "no copy of the request got through");
    assert!(recorder.requests.lock().unwrap().is_empty());
    let lost = net.counts().lost;
    assert!(lost > 1, "the request was sent again ({lost} copies lost)");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn request_dropped_by_a_partition_is_answered_once_the_link_heals() {
    let (net, transport, recorder) = two_hosts(10, LinkFaults::lan());
    net.partition(&[&["a"], &["b"]]);
    let started = tokio::time::Instant::now();
    let call = tokio::spawn(transport.unary("b", fetch(4)));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(recorder.requests.lock().unwrap().is_empty(), "cut off");
    net.heal();
    let reply = tokio::time::timeout(PATIENCE, call).await;
    assert!(
        matches!(reply, Ok(Ok(Ok(PeerReply::FetchBlock(_))))),
        "answered after the heal, not left to the caller's deadline"
    );
    assert_eq!(*recorder.requests.lock().unwrap(), vec![4], "handled once");
    assert!(started.elapsed() < Duration::from_secs(1) + PATIENCE);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn call_over_a_link_that_stays_cut_fails_when_the_keepalive_gives_up() {
    let (net, transport, recorder) = two_hosts(11, LinkFaults::lan());
    net.partition(&[&["a"], &["b"]]);
    let started = tokio::time::Instant::now();
    let keepalive =
        finkfs_raft::network::KEEPALIVE_INTERVAL + finkfs_raft::network::KEEPALIVE_TIMEOUT;
    let reply = tokio::time::timeout(keepalive + PATIENCE, transport.unary("b", fetch(5)))
        .await
        .expect("the call ends by itself");
    assert_eq!(reply.unwrap_err().code(), Code::Unavailable);
    let waited = started.elapsed();
    assert!(
        waited > keepalive / 2 && waited <= keepalive,
        "failed after {waited:?}, keepalive {keepalive:?}"
    );
    assert!(recorder.requests.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn partition_silences_both_ways_until_healed() {
    let (net, transport, recorder) = two_hosts(4, LinkFaults::lan());
    net.partition(&[&["a"], &["b"]]);
    let cut = tokio::time::timeout(PATIENCE, transport.unary("b", fetch(1))).await;
    assert!(cut.is_err(), "no answer across a partition");
    assert!(recorder.requests.lock().unwrap().is_empty());
    net.heal();
    let healed = tokio::time::timeout(PATIENCE, transport.unary("b", fetch(2))).await;
    assert!(matches!(healed, Ok(Ok(PeerReply::FetchBlock(_)))));
    assert_eq!(*recorder.requests.lock().unwrap(), vec![2]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn one_way_cut_loses_the_reply_after_the_request_was_handled() {
    let (net, transport, recorder) = two_hosts(5, LinkFaults::lan());
    net.set_link("b", "a", false);
    let call = tokio::time::timeout(PATIENCE, transport.unary("b", fetch(9))).await;
    assert!(call.is_err(), "the reply never comes back");
    assert_eq!(
        *recorder.requests.lock().unwrap(),
        vec![9],
        "but the request was handled"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn powered_off_host_hears_nothing_and_unknown_host_is_unavailable() {
    let (net, transport, recorder) = two_hosts(6, LinkFaults::lan());
    net.set_powered("b", false);
    let off = tokio::time::timeout(PATIENCE, transport.unary("b", fetch(1))).await;
    assert!(off.is_err(), "a host without power never answers");
    assert!(recorder.requests.lock().unwrap().is_empty());
    net.set_powered("b", true);
    let on = tokio::time::timeout(PATIENCE, transport.unary("b", fetch(2))).await;
    assert!(matches!(on, Ok(Ok(_))));

    let nowhere = transport.unary("c", fetch(3)).await;
    assert_eq!(nowhere.unwrap_err().code(), Code::Unavailable);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn powered_off_sender_sends_nothing() {
    let (net, transport, recorder) = two_hosts(7, LinkFaults::lan());
    net.set_powered("a", false);
    let call = tokio::time::timeout(PATIENCE, transport.unary("b", fetch(1))).await;
    assert!(call.is_err());
    assert!(recorder.requests.lock().unwrap().is_empty());
}

fn snapshot_chunks(count: u64) -> finkfs_raft::network::OutgoingChunks {
    futures_util::stream::iter((0..count).map(|i| proto::SnapshotChunk {
        group_id: 0,
        header: None,
        offset: i * 4096,
        data: Bytes::from(vec![0u8; 4096]),
        data_blake3: Bytes::new(),
        trailer: None,
    }))
    .boxed()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn snapshot_chunks_arrive_in_order_despite_random_delays() {
    let (_net, transport, recorder) = two_hosts(8, LinkFaults::lan());
    let reply = transport.install_snapshot("b", snapshot_chunks(200)).await;
    assert!(reply.is_ok(), "{reply:?}");
    let offsets = recorder.chunks.lock().unwrap().clone();
    assert_eq!(offsets, (0..200).map(|i| i * 4096).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn lost_snapshot_chunk_resets_the_stream_on_both_ends() {
    let (_net, transport, recorder) = two_hosts(9, LinkFaults::lan().dropping(0.05));
    let reply = transport.install_snapshot("b", snapshot_chunks(200)).await;
    assert_eq!(reply.unwrap_err().code(), Code::Unavailable);
    assert_eq!(
        *recorder.stream_errors.lock().unwrap(),
        vec![Code::Unavailable]
    );
    let received = recorder.chunks.lock().unwrap().len();
    assert!(received < 200, "the stream ended early: {received} chunks");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn snapshot_sender_that_gives_up_cancels_the_receiver() {
    let (_net, transport, recorder) = two_hosts(10, LinkFaults::lan());
    let sending = transport.install_snapshot("b", snapshot_chunks(10_000));
    // Gives up part way; the receiver's handler runs on as its own task.
    let gave_up = tokio::time::timeout(Duration::from_millis(300), sending).await;
    assert!(gave_up.is_err());
    tokio::time::sleep(PATIENCE).await;
    assert_eq!(
        *recorder.stream_errors.lock().unwrap(),
        vec![Code::Cancelled]
    );
    assert!(recorder.chunks.lock().unwrap().len() < 10_000);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn tap_sees_every_delivered_reply() {
    let (net, transport, _recorder) = two_hosts(11, LinkFaults::lan());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    net.set_tap(Arc::new(move |tapped| {
        sink.lock().unwrap().push(format!(
            "{}<-{} {}",
            tapped.from,
            tapped.to,
            tapped.reply.kind()
        ));
    }));
    for i in 0..3 {
        transport.unary("b", fetch(i)).await.unwrap();
    }
    assert_eq!(seen.lock().unwrap().len(), 3);
    assert_eq!(seen.lock().unwrap()[0], "a<-b FetchBlockReply");
}
