//! The lease on the deliveries one sending pass claimed. Claiming stamps the rows with the
//! pass's token and pushes them `lease` into the future; while the pass works a task
//! renews them every third of the lease. Another replica takes a row over only once its
//! lease ran out, so the pass stops sending as soon as it can no longer be sure of its
//! lease (a renewal failed and less than two SMTP timeouts are left, or a renewal found
//! rows taken over): what it did not send is sent by whoever claims it next.
//!
//! Outcomes are recorded while the pass goes on, one transaction per second of outcomes at
//! most, each release filtered by the token, so an email accepted by the SMTP server is
//! marked sent within a second, not at the end of a pass that may last minutes: a lease
//! that lapses (a stalled process) can then only resend the emails of that second, never a
//! whole pass. Recording and renewing
//! take the same lock ([`Lease::rows`]): they touch the same rows in different orders, and
//! run together they could deadlock, PostgreSQL aborting the outcomes.

use crate::deliveries::entity::{self, Column as C};
use feepay_runtime::clock::Clock;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A pass's hold on its claimed rows.
pub struct Lease {
    pub token: Uuid,
    valid_until: Arc<Mutex<Instant>>,
    rows: Arc<tokio::sync::Mutex<Held>>,
    renewer: tokio::task::JoinHandle<()>,
}

/// What the pass still holds; behind the lock that renewals and recording share.
struct Held {
    /// Rows still queued under the token: claimed, outcome not recorded yet.
    queued: u64,
    /// The pass recorded everything: no more renewals.
    finished: bool,
}

/// The rows of a pass while its outcomes are written: no renewal runs meanwhile.
pub struct Rows<'a> {
    held: tokio::sync::MutexGuard<'a, Held>,
}

impl Rows<'_> {
    /// `n` rows left the lease (their outcome committed, or another pass holds them).
    pub fn released(&mut self, n: usize) {
        self.held.queued = self.held.queued.saturating_sub(n as u64);
    }
}

impl Lease {
    /// Holds the `count` rows claimed with `token` at `claimed` (taken before the claim),
    /// renewing them every `length / 3` until finished or dropped.
    pub fn hold(
        db: DatabaseConnection,
        clock: Arc<dyn Clock>,
        token: Uuid,
        count: usize,
        length: Duration,
        claimed: Instant,
        renewals: prometheus::IntCounterVec,
    ) -> Lease {
        let valid_until = Arc::new(Mutex::new(claimed + length));
        let rows = Arc::new(tokio::sync::Mutex::new(Held { queued: count as u64, finished: false }));
        let (until, held) = (valid_until.clone(), rows.clone());
        let renewer = tokio::spawn(async move {
            loop {
                tokio::time::sleep(length / 3).await;
                let held = held.lock().await;
                if held.finished {
                    return;
                }
                let started = Instant::now();
                let renewed = entity::Entity::update_many()
                    .col_expr(C::NextAttemptAt, Expr::value(clock.now() + length))
                    .filter(C::ClaimToken.eq(token))
                    .filter(C::Status.eq("queued"))
                    .exec(&db)
                    .await;
                match renewed {
                    Ok(r) if r.rows_affected < held.queued => {
                        // Rows the pass has not recorded are held by another pass now: its
                        // lease lapsed. Nothing more is sent; the rest is the other's.
                        *until.lock().unwrap_or_else(|e| e.into_inner()) = started;
                        renewals.with_label_values(&["taken_over"]).inc();
                        tracing::error!(
                            held = held.queued,
                            renewed = r.rows_affected,
                            "the lease on claimed deliveries lapsed and another pass took rows over; sending stops"
                        );
                        return;
                    }
                    Ok(_) => {
                        *until.lock().unwrap_or_else(|e| e.into_inner()) = started + length;
                        renewals.with_label_values(&["renewed"]).inc();
                    }
                    Err(e) => {
                        renewals.with_label_values(&["failed"]).inc();
                        tracing::warn!(error = %e, "renewing the lease on claimed deliveries failed; sending stops before it runs out");
                    }
                }
            }
        });
        Lease { token, valid_until, rows, renewer }
    }

    /// The rows, for writing outcomes: waits for a running renewal to end.
    pub async fn rows(&self) -> Rows<'_> {
        Rows { held: self.rows.lock().await }
    }

    /// Ends the renewals, after any that is running: called once every outcome is recorded.
    pub async fn finish(&self) {
        self.rows.lock().await.finished = true;
    }

    /// Stops sending at once (outcomes could not be recorded).
    pub fn revoke(&self) {
        *self.valid_until.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// Whether an email may still be handed to the SMTP server: the lease lasts at least
    /// two SMTP timeouts more (one to get a pooled connection, one for the transaction).
    pub fn allows_send(&self, smtp_timeout: Duration) -> bool {
        Instant::now() + smtp_timeout * 2 < *self.valid_until.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}
