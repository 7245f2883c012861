//! The response bound of an upstream exchange without a timer per request: each connection
//! keeps one `Sleep`, armed at some request's deadline and moved only when it fires before the
//! deadline of the request now on the connection (or would fire after it). As deadlines only
//! move later, a busy connection re-arms its timer about once per response timeout instead of
//! registering and cancelling one for every request, as `tokio::time::timeout` does.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::Poll;

use tokio::time::{Instant, Sleep};

/// `work`'s output, or `None` when `deadline` passes first; `timer` is the connection's.
pub(super) async fn within<F: Future>(timer: &mut Pin<Box<Sleep>>, deadline: Instant, work: F) -> Option<F::Output> {
    if timer.deadline() > deadline {
        timer.as_mut().reset(deadline); // set for a later deadline than this one: a shorter bound
    }
    let mut work = pin!(work);
    poll_fn(|cx| {
        if let Poll::Ready(out) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        while timer.as_mut().poll(cx).is_ready() {
            if Instant::now() >= deadline {
                return Poll::Ready(None);
            }
            timer.as_mut().reset(deadline); // armed for an earlier request: move it to this one's
        }
        Poll::Pending
    })
    .await
}

/// A timer for a connection's first exchange.
pub(super) fn timer(deadline: Instant) -> Pin<Box<Sleep>> {
    Box::pin(tokio::time::sleep_until(deadline))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn work_that_ends_in_time_is_returned() {
        let mut t = timer(Instant::now() + Duration::from_secs(5));
        let got = within(&mut t, Instant::now() + Duration::from_secs(5), async {
            tokio::time::sleep(Duration::from_secs(4)).await;
            7
        })
        .await;
        assert_eq!(got, Some(7));
    }

    #[tokio::test(start_paused = true)]
    async fn work_past_the_deadline_is_cut_at_the_deadline() {
        let start = Instant::now();
        let mut t = timer(start + Duration::from_secs(5));
        let got = within(&mut t, start + Duration::from_secs(5), std::future::pending::<()>()).await;
        assert_eq!(got, None);
        assert_eq!(Instant::now() - start, Duration::from_secs(5));
    }

    /// A timer armed for an earlier request fires early, is moved, and cuts this request at
    /// its own deadline, not the earlier one.
    #[tokio::test(start_paused = true)]
    async fn a_timer_armed_earlier_moves_to_the_later_deadline() {
        let start = Instant::now();
        let mut t = timer(start + Duration::from_secs(5));
        tokio::time::sleep(Duration::from_secs(3)).await;
        let deadline = start + Duration::from_secs(8);
        let slow = within(&mut t, deadline, async {
            tokio::time::sleep(Duration::from_secs(4)).await; // ends at 7 s, after the old 5 s
            "answered"
        })
        .await;
        assert_eq!(slow, Some("answered"));
        assert_eq!(t.deadline(), deadline);
        let cut = within(&mut t, start + Duration::from_secs(10), std::future::pending::<()>()).await;
        assert_eq!(cut, None);
        assert_eq!(Instant::now() - start, Duration::from_secs(10));
    }

    /// A deadline earlier than the timer's (a shorter bound after a reload) still holds.
    #[tokio::test(start_paused = true)]
    async fn a_shorter_deadline_moves_the_timer_earlier() {
        let start = Instant::now();
        let mut t = timer(start + Duration::from_secs(60));
        let got = within(&mut t, start + Duration::from_secs(2), std::future::pending::<()>()).await;
        assert_eq!(got, None);
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
    }
}
