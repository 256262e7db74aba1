//! Guards against client futures that cannot be handed to `tokio::spawn`:
//! the put calls once failed to compile there with "implementation of
//! `Send` is not general enough" while get and delete spawned fine.

use bytes::Bytes;
use finkfs_node::client::Client;

#[test]
fn client_futures_spawn_on_a_multi_thread_runtime() {
    // Never called: that this compiles is the check.
    #[allow(dead_code)]
    fn spawn_all(client: Client) {
        let c = client.clone();
        tokio::spawn(async move { c.put("a/b", Bytes::from_static(b"x")).await });
        let c = client.clone();
        tokio::spawn(async move { c.put_checked("a/b", Bytes::from_static(b"x"), None).await });
        let c = client.clone();
        tokio::spawn(async move {
            let source = Bytes::from_static(b"x");
            c.put_source("a/b", &source, None).await
        });
        let c = client.clone();
        tokio::spawn(async move { c.get("a/b").await });
        tokio::spawn(async move { client.delete("a/b").await });
    }
}
