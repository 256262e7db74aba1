//! Guards against bad requests that store something, crash a node, or fail
//! with a status nobody can act on: invalid paths, objects over the limit,
//! messages over the ceiling, data that does not match its announced size
//! or BLAKE3, ranges outside the object.

mod api_support;

use api_support::{bytes, Cluster};
use bytes::Bytes;
use finkfs_node::api::proto::client_client::ClientClient;
use finkfs_node::api::proto::{put_request, ListRequest, PutHeader, PutManyRequest, PutRequest};
use finkfs_node::api::CLIENT_MESSAGE_BYTES_MAX;
use finkfs_node::client::PutItem;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_paths_are_refused_and_nothing_is_stored() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client().await;
    for path in [
        "",
        "/abs",
        "a//b",
        "a/../b",
        "a/./b",
        "trailing/",
        "nul\0byte",
    ] {
        let error = client.put(path, vec![1u8; 10]).await.unwrap_err();
        assert_eq!(
            error.code(),
            Some(Code::InvalidArgument),
            "{path:?}: {error}"
        );
        let message = error.message().unwrap_or_default();
        assert!(
            message.contains("invalid object path"),
            "{path:?}: {message}"
        );
        let stat = client.stat(path).await.unwrap_err();
        assert_eq!(stat.code(), Some(Code::InvalidArgument), "{path:?}");
    }
    let long = "a".repeat(finkfs_node::OBJECT_PATH_BYTES_MAX + 1);
    let error = client.put(&long, vec![1u8; 10]).await.unwrap_err();
    assert_eq!(error.code(), Some(Code::InvalidArgument));
    assert!(
        client.list_all("").await.expect("list").is_empty(),
        "nothing stored"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blake3_mismatch_is_refused_and_nothing_is_stored() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client().await;
    let wrong = *blake3::hash(b"something else").as_bytes();
    for (path, len) in [("small/alert", 60_000), ("large/file", 9 << 20)] {
        let data = Bytes::from(bytes(len, 1));
        let error = client
            .put_checked(path, data.clone(), Some(wrong))
            .await
            .unwrap_err();
        assert_eq!(error.code(), Some(Code::InvalidArgument), "{path}: {error}");
        assert!(
            error
                .message()
                .unwrap_or_default()
                .contains("not the expected"),
            "{error}"
        );
        assert_eq!(
            client.stat(path).await.expect("stat"),
            None,
            "{path} stored"
        );
        let right = *blake3::hash(&data).as_bytes();
        client
            .put_checked(path, data, Some(right))
            .await
            .expect("matching hash stores");
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_are_refused_with_clear_statuses() {
    let cluster = Cluster::start_with(3, |config| config.object_bytes_max = 2 << 20).await;
    let client = cluster.client().await;
    // An object over the node's limit.
    let error = client
        .put("big/one", vec![0u8; (2 << 20) + 1])
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(Code::InvalidArgument));
    assert!(
        error
            .message()
            .unwrap_or_default()
            .contains("exceeds the maximum"),
        "{error}"
    );
    assert_eq!(client.stat("big/one").await.expect("stat"), None);
    // A PutMany object over the limit fails alone.
    let results = client
        .put_many(vec![
            PutItem::new("many/ok", vec![1u8; 100]),
            PutItem::new("many/big", vec![1u8; (2 << 20) + 1]),
        ])
        .await
        .expect("put_many");
    assert!(results[0].is_ok());
    assert_eq!(
        results[1].as_ref().unwrap_err().code(),
        Some(Code::InvalidArgument)
    );

    let leader = cluster.wait_for_leader().await;
    let endpoint = format!("http://{}", cluster.nodes[leader].client_addr);
    let raw = ClientClient::connect(endpoint).await.expect("raw connect");
    let mut raw = raw
        .max_encoding_message_size(4 * CLIENT_MESSAGE_BYTES_MAX)
        .max_decoding_message_size(CLIENT_MESSAGE_BYTES_MAX);
    // A message over the service's ceiling.
    let huge = PutManyRequest {
        path: "many/huge".into(),
        data: Bytes::from(vec![0u8; CLIENT_MESSAGE_BYTES_MAX + 1]),
        expected_blake3: None,
    };
    let outcome = async {
        let mut replies = raw
            .put_many(futures_util::stream::iter(vec![huge]))
            .await?
            .into_inner();
        replies.message().await
    }
    .await;
    let status = outcome.unwrap_err();
    assert!(
        matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{status:?}"
    );
    // More bytes than the header announced.
    let header = PutRequest {
        part: Some(put_request::Part::Header(PutHeader {
            path: "lying/size".into(),
            size: 4,
            expected_blake3: None,
        })),
    };
    let data = PutRequest {
        part: Some(put_request::Part::Data(Bytes::from_static(b"12345"))),
    };
    let status = raw
        .put(futures_util::stream::iter(vec![header, data]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    // A listing page over the ceiling.
    let list = ListRequest {
        prefix: String::new(),
        start_after: None,
        limit: 10_001,
    };
    let status = raw.list(list).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(client.stat("lying/size").await.expect("stat"), None);
    drop(raw);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_outside_the_object_are_out_of_range() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client().await;
    client.put("r/x", vec![1u8; 100]).await.expect("put");
    for (start, len) in [(0, 101), (100, 1), (u64::MAX, 2)] {
        let error = client.get_range("r/x", start, len).await.unwrap_err();
        assert_eq!(error.code(), Some(Code::OutOfRange), "{start}+{len}");
    }
    let error = client.get("r/missing").await.unwrap_err();
    assert_eq!(error.code(), Some(Code::NotFound));
    cluster.stop().await;
}
