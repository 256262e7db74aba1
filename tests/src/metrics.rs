//! Reading a node's Prometheus `/metrics` endpoint.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest wait for one scrape.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest page read.
const PAGE_BYTES_MAX: u64 = 4 << 20;

/// The text of `GET /metrics` at `addr` (`host:port`).
pub async fn scrape(addr: &str) -> Result<String, String> {
    let fetch = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("send to {addr}: {e}"))?;
        let mut page = Vec::new();
        stream
            .take(PAGE_BYTES_MAX)
            .read_to_end(&mut page)
            .await
            .map_err(|e| format!("read from {addr}: {e}"))?;
        String::from_utf8(page).map_err(|e| format!("metrics of {addr} are not UTF-8: {e}"))
    };
    let page = tokio::time::timeout(SCRAPE_TIMEOUT, fetch)
        .await
        .map_err(|_| format!("no metrics from {addr} within {SCRAPE_TIMEOUT:?}"))??;
    let (head, body) = page
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("metrics reply of {addr} has no header end"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "metrics reply of {addr}: {}",
            head.lines().next().unwrap_or("")
        ));
    }
    Ok(body.to_string())
}

/// The value of the unlabelled-or-only series of gauge `name` in `page`.
pub fn gauge(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .find(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauge_reads_labelled_and_plain_series_by_exact_name() {
        let page = "# HELP a_b x\na_bc{n=\"1\"} 9\na_b{n=\"1\"} 42\nc 7\n";
        assert_eq!(gauge(page, "a_b"), Some(42.0));
        assert_eq!(gauge(page, "c"), Some(7.0));
        assert_eq!(gauge(page, "a"), None);
    }
}
