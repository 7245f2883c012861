//! One turn of the run queue before a write. The tasks one batch of readiness events woke then
//! all run (read, decide, prepare) before any of them writes, so their sends leave together, a
//! round at a time, as HAProxy's event loop sends. The client and Keycloak then find several
//! answers per wake-up instead of one, which saves each side wake-ups and system calls. With
//! one task ready the turn costs one more poll of it.

use std::future::poll_fn;
use std::task::Poll;

/// Waits behind every task already queued on this runtime thread, then returns.
pub async fn turn() {
    let mut queued = false;
    poll_fn(|cx| {
        if queued {
            return Poll::Ready(());
        }
        queued = true;
        cx.waker().wake_by_ref(); // to the back of the run queue
        Poll::Pending
    })
    .await
}
