//! Guards against objects that come back different from what was put —
//! alert-sized, empty, block-sized and multi-block — through the client
//! library against a real three-node cluster, and against listings, stats
//! and deletes that disagree with what is stored.

mod api_support;

use api_support::{bytes, Cluster};
use bytes::Bytes;
use finkfs_node::api::BLOCK_BYTES;
use finkfs_node::client::PutItem;

const BLOCK: usize = BLOCK_BYTES as usize;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_of_every_size_round_trip_byte_identical() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client().await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("ztf/raw/alert-empty.avro", Vec::new()),
        ("ztf/raw/alert-1.avro", bytes(60_000, 1)),
        ("ztf/raw/one-block.bin", bytes(BLOCK, 2)),
        ("ztf/raw/block-and-a-byte.bin", bytes(BLOCK + 1, 3)),
        // Larger than one entry: PutBlocks entries, then a PutObject.
        (
            "ztf/parquet/part-0001.parquet",
            bytes(10 * BLOCK + 12_345, 4),
        ),
    ];
    for (path, data) in &cases {
        let outcome = client.put(path, data.clone()).await.expect("put");
        assert_eq!(outcome.size, data.len() as u64, "{path}");
        assert_eq!(outcome.blake3, *blake3::hash(data).as_bytes(), "{path}");
    }
    for (path, data) in &cases {
        let got = client.get(path).await.expect("get");
        assert!(got == data[..], "{path}: bytes differ");
        let info = client
            .stat(path)
            .await
            .expect("stat")
            .expect("object exists");
        assert_eq!(info.size, data.len() as u64);
        assert_eq!(info.blake3, *blake3::hash(data).as_bytes());
        assert_eq!(info.block_count as usize, data.len().div_ceil(BLOCK));
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_across_block_boundaries_match_the_object() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client().await;
    let data = bytes(3 * BLOCK + 777, 5);
    client.put("a/big", data.clone()).await.expect("put");
    let ranges = [
        (0, 10),
        (BLOCK as u64 - 5, 10),
        (BLOCK as u64, BLOCK as u64),
        (2 * BLOCK as u64 - 1, BLOCK as u64 + 2),
        (data.len() as u64 - 1, 1),
        (17, 0),
    ];
    for (start, len) in ranges {
        let got = client.get_range("a/big", start, len).await.expect("range");
        let want = &data[start as usize..(start + len) as usize];
        assert!(got == want, "range {start}+{len} differs");
    }
    let mut out = Vec::new();
    let outcome = client.get_to("a/big", &mut out).await.expect("get_to");
    assert_eq!(outcome.size, data.len() as u64);
    assert!(out == data, "streamed download differs");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_stat_and_delete_agree_with_what_is_stored() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client().await;
    for i in 0..7 {
        let path = format!("ztf/day=14/part-{i:04}");
        client
            .put(&path, bytes(100 + i, i as u64))
            .await
            .expect("put");
    }
    client
        .put("ztf/day=15/other", bytes(5, 9))
        .await
        .expect("put");
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = client
            .list("ztf/day=14/", after.as_deref(), 3)
            .await
            .expect("list");
        assert!(page.objects.len() <= 3);
        seen.extend(page.objects.iter().map(|o| o.path.clone()));
        match page.next_start_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let want: Vec<String> = (0..7).map(|i| format!("ztf/day=14/part-{i:04}")).collect();
    assert_eq!(seen, want);
    assert_eq!(client.list_all("ztf/").await.expect("list all").len(), 8);

    let deleted = client.delete("ztf/day=14/part-0003").await.expect("delete");
    assert!(deleted.existed);
    assert_eq!(
        client.stat("ztf/day=14/part-0003").await.expect("stat"),
        None
    );
    let again = client
        .delete("ztf/day=14/part-0003")
        .await
        .expect("delete again");
    assert!(!again.existed, "a second delete finds nothing");
    let get = client.get("ztf/day=14/part-0003").await.unwrap_err();
    assert_eq!(get.code(), Some(tonic::Code::NotFound));
    assert_eq!(client.list_all("ztf/day=14/").await.expect("list").len(), 6);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_many_stores_every_alert_in_shared_entries() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client().await;
    let items: Vec<PutItem> = (0..300)
        .map(|i| PutItem::new(format!("alerts/{i:05}.avro"), bytes(50_000 + i, i as u64)))
        .collect();
    let results = client.put_many(items.clone()).await.expect("put_many");
    assert_eq!(results.len(), items.len());
    let mut indices = std::collections::BTreeSet::new();
    for (item, result) in items.iter().zip(&results) {
        let outcome = result.as_ref().expect("stored");
        assert_eq!(outcome.blake3, *blake3::hash(&item.data).as_bytes());
        indices.insert(outcome.log_index);
    }
    assert!(
        indices.len() < items.len(),
        "{} alerts took {} entries: no batching",
        items.len(),
        indices.len()
    );
    for item in items.iter().step_by(37) {
        let got = client.get(&item.path).await.expect("get");
        assert_eq!(got, item.data);
    }
    // A bad object fails alone.
    let mixed = vec![
        PutItem::new("ok/1", Bytes::from_static(b"one")),
        PutItem::new("/bad", Bytes::from_static(b"two")),
        PutItem::new("ok/3", Bytes::from_static(b"three")),
    ];
    let results = client.put_many(mixed).await.expect("put_many");
    assert!(results[0].is_ok() && results[2].is_ok());
    let error = results[1].as_ref().unwrap_err();
    assert_eq!(error.code(), Some(tonic::Code::InvalidArgument));
    cluster.stop().await;
}
