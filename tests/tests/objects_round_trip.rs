//! Guards against objects that do not come back from real node processes
//! exactly as written — a byte, a size, a hash or a listing entry changed
//! on the way through the client protocol, the Raft log and the block
//! store — and against deletes that leave anything behind.

use finkfs_node::client::Client;
use finkfs_node::client::PutItem;
use finkfs_tests::alerts::{random_bytes, real_alerts, synthetic_night, Alert};
use finkfs_tests::{LocalCluster, Settings};
use futures_util::{stream, StreamExt};
use tonic::Code;

/// Synthetic alerts per round trip.
const SYNTHETIC_ALERTS: u64 = 120;
/// Calls in flight at once.
const IN_FLIGHT_MAX: usize = 8;
/// Objects per PutMany call.
const PUT_MANY_BATCH: usize = 32;
/// Size of a block (objects are split into blocks of this size).
const BLOCK_BYTES: u64 = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_sized_objects_round_trip_byte_identical_through_put_get_list_stat_delete() {
    let cluster = LocalCluster::start(Settings::default()).await;
    let client = cluster.client().await;
    let alerts = synthetic_night("ztf/raw", 1, SYNTHETIC_ALERTS);
    round_trip(&client, "ztf/raw/", &alerts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_ztf_alerts_round_trip_byte_identical() {
    let Some(alerts) = real_alerts("ztf/real") else {
        return;
    };
    let cluster = LocalCluster::start(Settings::default()).await;
    let client = cluster.client().await;
    round_trip(&client, "ztf/real/", &alerts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_mib_object_round_trips_byte_identical_whole_streamed_and_by_range() {
    let cluster = LocalCluster::start(Settings::default()).await;
    let client = cluster.client().await;
    let path = "ztf/parquet/year=2021/month=12/day=14/part-0001.parquet";
    let data = random_bytes(50, 50 << 20);
    let hash = *blake3::hash(&data).as_bytes();

    let stored = client.put(path, data.clone()).await.expect("put 50 MiB");
    assert_eq!(stored.size, data.len() as u64);
    assert_eq!(stored.blake3, hash);

    let info = client.stat(path).await.expect("stat").expect("stored");
    assert_eq!((info.size, info.blake3), (data.len() as u64, hash));
    assert_eq!(u64::from(info.block_bytes), BLOCK_BYTES);
    assert_eq!(u64::from(info.block_count), data.len() as u64 / BLOCK_BYTES);

    let whole = client.get(path).await.expect("get 50 MiB");
    assert!(whole == data, "the 50 MiB object differs when read whole");
    let mut streamed = Vec::new();
    let outcome = client.get_to(path, &mut streamed).await.expect("get_to");
    assert_eq!((outcome.size, outcome.blake3), (data.len() as u64, hash));
    assert!(streamed == data, "the 50 MiB object differs when streamed");
    // A range across a block boundary, and the last bytes.
    for (start, len) in [(BLOCK_BYTES - 100, 300), ((50 << 20) - 7, 7)] {
        let range = client.get_range(path, start, len).await.expect("range");
        let (from, to) = (start as usize, (start + len) as usize);
        assert!(range == data[from..to], "range {start}+{len} differs");
    }

    let listed = client.list_all("ztf/parquet/").await.expect("list");
    assert_eq!(listed, vec![info]);
    assert!(client.delete(path).await.expect("delete").existed);
    assert_eq!(client.stat(path).await.expect("stat"), None);
    assert!(client.list_all("ztf/").await.expect("list").is_empty());
}

/// Stores `alerts` (half one by one, half with PutMany), then checks every
/// read path, deletes every other one and checks what is left.
async fn round_trip(client: &Client, prefix: &str, alerts: &[Alert]) {
    let (singles, batched) = alerts.split_at(alerts.len() / 2);
    put_each(client, singles).await;
    for chunk in batched.chunks(PUT_MANY_BATCH) {
        let items = chunk
            .iter()
            .map(|a| PutItem::new(a.path.clone(), a.data.clone()))
            .collect();
        let results = client.put_many(items).await.expect("put_many");
        for (alert, result) in chunk.iter().zip(results) {
            let stored = result.unwrap_or_else(|e| panic!("put_many {}: {e}", alert.path));
            assert_eq!(stored.blake3, *blake3::hash(&alert.data).as_bytes());
        }
    }

    assert_listing(client, prefix, alerts).await;
    for_each(alerts, |alert| async move {
        let info = client
            .stat(&alert.path)
            .await
            .expect("stat")
            .expect("stored");
        assert_eq!(info.size, alert.data.len() as u64, "size of {}", alert.path);
        assert_eq!(info.blake3, *blake3::hash(&alert.data).as_bytes());
        let data = client.get(&alert.path).await.expect("get");
        assert!(data == alert.data, "{} differs when read back", alert.path);
        let (start, len) = (alert.data.len() as u64 / 3, 1000);
        let range = client
            .get_range(&alert.path, start, len)
            .await
            .expect("range");
        assert!(range == alert.data.slice(start as usize..(start + len) as usize));
    })
    .await;

    let gone: Vec<Alert> = alerts.iter().step_by(2).cloned().collect();
    let kept: Vec<Alert> = alerts.iter().skip(1).step_by(2).cloned().collect();
    for_each(&gone, |alert| async move {
        assert!(client.delete(&alert.path).await.expect("delete").existed);
        assert_eq!(client.stat(&alert.path).await.expect("stat"), None);
        let error = client.get(&alert.path).await.expect_err("deleted");
        assert_eq!(error.code(), Some(Code::NotFound), "{error}");
        assert!(
            !client
                .delete(&alert.path)
                .await
                .expect("delete again")
                .existed
        );
    })
    .await;
    assert_listing(client, prefix, &kept).await;
    for_each(&kept, |alert| async move {
        let data = client.get(&alert.path).await.expect("get");
        assert!(
            data == alert.data,
            "{} differs after other deletes",
            alert.path
        );
    })
    .await;
}

async fn put_each(client: &Client, alerts: &[Alert]) {
    for_each(alerts, |alert| async move {
        let stored = client
            .put(&alert.path, alert.data.clone())
            .await
            .unwrap_or_else(|e| panic!("put {}: {e}", alert.path));
        assert_eq!(stored.size, alert.data.len() as u64);
        assert_eq!(stored.blake3, *blake3::hash(&alert.data).as_bytes());
    })
    .await;
}

/// The listing under `prefix` names exactly `alerts`, in path order, with
/// their sizes and hashes.
async fn assert_listing(client: &Client, prefix: &str, alerts: &[Alert]) {
    let mut expected: Vec<(String, u64, [u8; 32])> = alerts
        .iter()
        .map(|a| {
            (
                a.path.clone(),
                a.data.len() as u64,
                *blake3::hash(&a.data).as_bytes(),
            )
        })
        .collect();
    expected.sort();
    let listed: Vec<(String, u64, [u8; 32])> = client
        .list_all(prefix)
        .await
        .expect("list")
        .into_iter()
        .map(|o| (o.path, o.size, o.blake3))
        .collect();
    assert_eq!(
        listed.len(),
        expected.len(),
        "objects listed under {prefix}"
    );
    assert!(listed == expected, "the listing under {prefix} differs");
}

/// Runs `check` on every alert, a few at a time.
async fn for_each<'a, F, Fut>(alerts: &'a [Alert], check: F)
where
    F: Fn(&'a Alert) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    stream::iter(alerts)
        .map(check)
        .buffer_unordered(IN_FLIGHT_MAX)
        .collect::<Vec<()>>()
        .await;
}
