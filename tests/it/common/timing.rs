//! Waiting on the clock where the tool judges time in whole seconds.

/// Waits until the tool can tell "unchanged" from a write just before: it reports "unchanged"
/// only when its last write to a Secret is more than about 1 s older than the server's answer
/// (both in whole seconds), so a pass right after a write reports an update.
pub async fn after_write_window() {
    let into = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_millis();
    tokio::time::sleep(std::time::Duration::from_millis(u64::from(2050 - into))).await;
}

/// The time now, in seconds since the epoch (as ECR's `expiresAt`).
pub fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}
