//! Guards against a node that stores, crashes on, or answers vaguely to
//! bad input: invalid paths, oversized or lying uploads, random bytes and
//! malformed gRPC calls on its ports, requests to a node outside any
//! cluster — and against a follower that makes a client fail instead of
//! sending it to the leader.

use bytes::Bytes;
use finkfs_node::api::proto::client_client::ClientClient;
use finkfs_node::api::proto::{put_request, PutHeader, PutRequest};
use finkfs_node::client::{Client, ClientError, PutItem};
use finkfs_tests::alerts::{random_bytes, synthetic_night};
use finkfs_tests::garbage::{send_grpc_garbage, send_tcp_garbage};
use finkfs_tests::objects::{assert_exactly, put_in_order};
use finkfs_tests::{LocalCluster, Settings};
use tonic::Code;

/// `--object-bytes-max` of the oversized-upload test: two blocks.
const OBJECT_BYTES_MAX: u64 = 2 << 20;
/// The longest valid path, in bytes.
const PATH_BYTES_MAX: usize = 1024;
/// Longest wait for a leader.
const LEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Paths the client protocol must refuse, and why.
fn invalid_paths() -> Vec<(String, &'static str)> {
    vec![
        ("".to_string(), "empty"),
        ("..".to_string(), "'..' segment"),
        ("ztf/../etc/passwd".to_string(), "'..' segment"),
        ("ztf/./raw".to_string(), "'.' segment"),
        ("ztf//raw".to_string(), "empty segment"),
        ("ztf/raw/".to_string(), "trailing '/'"),
        ("/ztf/raw".to_string(), "leading '/'"),
        ("ztf/r\0aw".to_string(), "NUL byte"),
        ("a".repeat(PATH_BYTES_MAX + 1), "too long"),
    ]
}

fn assert_refused<T: std::fmt::Debug>(
    result: Result<T, ClientError>,
    code: Code,
    message: &str,
    what: &str,
) {
    let error = result.expect_err(what);
    assert_eq!(error.code(), Some(code), "{what}: {error}");
    let said = error.message().unwrap_or_default();
    assert!(said.contains(message), "{what}: {said:?} lacks {message:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_paths_are_refused_with_invalid_argument_and_nothing_is_stored() {
    let cluster = LocalCluster::start(Settings::default()).await;
    let client = cluster.client().await;
    let data = Bytes::from_static(b"alert bytes");
    for (path, why) in invalid_paths() {
        let what = format!("path {why}");
        let refusal = "invalid object path";
        assert_refused(
            client.put(&path, data.clone()).await,
            Code::InvalidArgument,
            refusal,
            &what,
        );
        assert_refused(
            client.get(&path).await,
            Code::InvalidArgument,
            refusal,
            &what,
        );
        assert_refused(
            client.stat(&path).await,
            Code::InvalidArgument,
            refusal,
            &what,
        );
        assert_refused(
            client.delete(&path).await,
            Code::InvalidArgument,
            refusal,
            &what,
        );
    }
    let items = invalid_paths()
        .into_iter()
        .map(|(path, _)| PutItem::new(path, data.clone()))
        .collect();
    for result in client.put_many(items).await.expect("put_many") {
        assert_eq!(
            result.expect_err("invalid path").code(),
            Some(Code::InvalidArgument)
        );
    }
    assert!(
        client.list_all("").await.expect("list").is_empty(),
        "something was stored"
    );

    let longest = "a".repeat(PATH_BYTES_MAX);
    client
        .put(&longest, data.clone())
        .await
        .expect("the longest valid path");
    assert_eq!(client.get(&longest).await.expect("get"), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_lying_uploads_are_refused_and_nothing_is_stored() {
    let settings = Settings {
        object_bytes_max: Some(OBJECT_BYTES_MAX),
        ..Settings::default()
    };
    let mut cluster = LocalCluster::start(settings).await;
    let client = cluster.client().await;
    let too_big = random_bytes(1, OBJECT_BYTES_MAX as usize + 1);
    assert_refused(
        client.put("big/over", too_big.clone()).await,
        Code::InvalidArgument,
        "exceeds the maximum",
        "an object one byte over the maximum",
    );
    let results = client
        .put_many(vec![PutItem::new("big/over-many", too_big)])
        .await
        .expect("put_many");
    let refused = results
        .into_iter()
        .next()
        .expect("one result")
        .expect_err("oversized");
    assert_eq!(refused.code(), Some(Code::InvalidArgument), "{refused}");
    let wrong_hash = client
        .put_checked("big/wrong-hash", Bytes::from_static(b"x"), Some([0; 32]))
        .await;
    assert_refused(
        wrong_hash,
        Code::InvalidArgument,
        "not the expected",
        "a wrong BLAKE3",
    );

    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let addr = cluster.client_addr(leader);
    let short = raw_put(&addr, "big/short", 3 << 19, vec![random_bytes(2, 1 << 20)]).await;
    assert_eq!(short.code(), Code::InvalidArgument, "{short:?}");
    assert!(short.message().contains("announced"), "{short:?}");
    let long = raw_put(&addr, "big/long", 100, vec![random_bytes(3, 200)]).await;
    assert_eq!(long.code(), Code::InvalidArgument, "{long:?}");
    assert!(long.message().contains("carries more"), "{long:?}");

    assert!(
        client.list_all("").await.expect("list").is_empty(),
        "something was stored"
    );
    for path in [
        "big/over",
        "big/over-many",
        "big/wrong-hash",
        "big/short",
        "big/long",
    ] {
        assert_eq!(client.stat(path).await.expect("stat"), None, "{path}");
    }
    let at_limit = random_bytes(4, OBJECT_BYTES_MAX as usize);
    client
        .put("big/at-limit", at_limit.clone())
        .await
        .expect("an object at the maximum");
    assert!(client.get("big/at-limit").await.expect("get") == at_limit);
}

/// A Put whose header announces `size` bytes, followed by `chunks`, sent
/// directly to `addr`; the status it fails with.
async fn raw_put(addr: &str, path: &str, size: u64, chunks: Vec<Bytes>) -> tonic::Status {
    let mut grpc = ClientClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let header = PutHeader {
        path: path.to_string(),
        size,
        expected_blake3: None,
    };
    let mut messages = vec![PutRequest {
        part: Some(put_request::Part::Header(header)),
    }];
    messages.extend(chunks.into_iter().map(|data| PutRequest {
        part: Some(put_request::Part::Data(data)),
    }));
    grpc.put(futures_util::stream::iter(messages))
        .await
        .expect_err("a lying upload is refused")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_and_malformed_grpc_on_every_port_leave_every_node_serving() {
    let mut cluster = LocalCluster::start(Settings::default()).await;
    let client = cluster.client().await;
    let before = synthetic_night("garbage/before", 9, 10);
    put_in_order(&client, &before).await;

    let peer_methods = [
        ("/finkfs.peer.v1.Peer/Vote", 1),
        ("/finkfs.peer.v1.Peer/PreVote", 1),
        ("/finkfs.peer.v1.Peer/AppendEntries", 1),
        ("/finkfs.peer.v1.Peer/TransferLeader", 1),
        ("/finkfs.peer.v1.Peer/FetchBlock", 1),
        ("/finkfs.peer.v1.Peer/HeldLog", 1),
        ("/finkfs.peer.v1.Peer/StreamAppend", 3),
        ("/finkfs.peer.v1.Peer/InstallSnapshot", 3),
    ];
    let client_methods = [
        ("/finkfs.client.v1.Client/Status", 1),
        ("/finkfs.client.v1.Client/Put", 3),
        ("/finkfs.client.v1.Client/Init", 1),
    ];
    for id in cluster.ids() {
        let node = cluster.node(id);
        for (seed, addr) in [(10 * id, &node.peer_addr), (10 * id + 5, &node.client_addr)] {
            for after_preface in [false, true] {
                send_tcp_garbage(addr, seed, 64 << 10, after_preface)
                    .await
                    .unwrap_or_else(|e| panic!("garbage to node {id}: {e}"));
            }
        }
        for (method, messages) in peer_methods {
            let status = send_grpc_garbage(&node.peer_addr, method, id, messages).await;
            let status = status.unwrap_or_else(|e| panic!("node {id}: {e}"));
            assert_undecodable(&status, id, method);
        }
        for (method, messages) in client_methods {
            let status = send_grpc_garbage(&node.client_addr, method, id, messages).await;
            let status = status.unwrap_or_else(|e| panic!("node {id}: {e}"));
            assert_undecodable(&status, id, method);
        }
    }

    for id in cluster.ids() {
        assert!(
            cluster.running_ids().contains(&id),
            "node {id} died of garbage"
        );
        cluster
            .status_of(id)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let mut alerts = before;
    let after = synthetic_night("garbage/after", 10, 10);
    put_in_order(&client, &after).await;
    alerts.extend(after);
    assert_exactly(&client, "garbage/", &alerts).await;
}

/// The answer to a message that is not protobuf: a clean refusal saying
/// so (tonic answers INTERNAL; INVALID_ARGUMENT would be as clear).
fn assert_undecodable(status: &tonic::Status, id: u64, method: &str) {
    assert!(
        matches!(status.code(), Code::Internal | Code::InvalidArgument),
        "node {id} {method}: {status:?}"
    );
    assert!(
        status.message().contains("decode"),
        "node {id} {method}: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_outside_any_cluster_refuses_requests_with_a_clear_status() {
    let mut cluster = LocalCluster::start(Settings::default()).await;
    let client = cluster.client().await;
    let alerts = synthetic_night("outsider", 11, 5);
    put_in_order(&client, &alerts).await;

    cluster.add_node(4).await;
    let status = cluster.status_of(4).await.expect("status of the new node");
    assert!(status.members.is_empty(), "{:?}", status.members);
    let outsider = cluster.client_of(&[4]).await;
    let refusal = "node 4 is not a member of any cluster";
    let what = "a request to a non-member";
    let data = Bytes::from_static(b"x");
    assert_refused(
        outsider.put("outsider/x", data).await,
        Code::Unavailable,
        refusal,
        what,
    );
    assert_refused(
        outsider.get(&alerts[0].path).await,
        Code::Unavailable,
        refusal,
        what,
    );
    assert_refused(
        outsider.stat(&alerts[0].path).await,
        Code::Unavailable,
        refusal,
        what,
    );
    assert_refused(
        outsider.list_all("").await,
        Code::Unavailable,
        refusal,
        what,
    );
    assert_refused(
        outsider.delete(&alerts[0].path).await,
        Code::Unavailable,
        refusal,
        what,
    );
    // The cluster is untouched.
    assert_exactly(&client, "outsider/", &alerts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_sent_to_a_follower_is_redirected_to_the_leader_by_the_client_library() {
    let mut cluster = LocalCluster::start(Settings::default()).await;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let follower = cluster
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    let follower_addr = cluster.client_addr(follower);

    // What the follower answers a write: FAILED_PRECONDITION naming the leader.
    let refused = raw_put(
        &follower_addr,
        "redirect/raw",
        1,
        vec![Bytes::from_static(b"x")],
    )
    .await;
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let named = refused
        .metadata()
        .get("finkfs-leader")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    assert_eq!(named, Some(cluster.client_addr(leader)));

    // A client that believes the old leader leads, once leadership moved
    // to the follower: its writes reach the old leader, now a follower,
    // and the library follows the redirect.
    let stale: Client = cluster.client_of(&[leader]).await;
    let helper = cluster.client().await;
    let down = cluster.force_leader(follower, &helper).await;
    assert_ne!(down, leader, "the old leader runs, as a follower");
    assert_eq!(stale.leader_addr(), Some(cluster.client_addr(leader)));
    let alerts = synthetic_night("redirect", 12, 6);
    put_in_order(&stale, &alerts[..3]).await;
    assert_eq!(stale.leader_addr(), Some(cluster.client_addr(follower)));
    let items = alerts[3..]
        .iter()
        .map(|a| PutItem::new(a.path.clone(), a.data.clone()))
        .collect();
    for result in stale.put_many(items).await.expect("put_many") {
        result.expect("stored");
    }
    assert_exactly(&stale, "redirect/", &alerts).await;
}
