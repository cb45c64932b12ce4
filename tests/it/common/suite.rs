//! One lock for the whole test binary. Most tests work in namespaces of their own and run side
//! by side (`shared`). A few act on the whole server: `prune` over every namespace, admission
//! policies that bind cluster-wide, the quick start under deploy/'s real names, and the request
//! counts taken by the server. Those take `exclusive`, so no other test runs meanwhile.
//!
//! Every test takes one or the other as its first statement; `layering.rs` checks that.

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static SUITE: RwLock<()> = RwLock::const_new(());

/// For a test that stays in namespaces (and names) of its own.
pub async fn shared() -> RwLockReadGuard<'static, ()> {
    SUITE.read().await
}

/// `shared`, for a test that is not async.
pub fn shared_blocking() -> RwLockReadGuard<'static, ()> {
    SUITE.blocking_read()
}

/// For a test that acts on the whole server, or counts what the server saw.
pub async fn exclusive() -> RwLockWriteGuard<'static, ()> {
    SUITE.write().await
}
