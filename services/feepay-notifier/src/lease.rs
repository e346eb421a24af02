//! The lease on the deliveries one sending pass claimed. Claiming stamps the rows with the
//! pass's token and pushes them `lease` into the future; while the pass works a task
//! renews them every third of the lease. Another replica takes the rows over only once the
//! lease ran out, so the pass stops sending as soon as it can no longer be sure of its
//! lease (a renewal failed and less than two SMTP timeouts are left): what it did not send
//! is sent by whoever claims it next, and every outcome it records is filtered by its token,
//! so a pass that lost its rows writes nothing over another's.
//!
//! Before, the lease was a fixed three SMTP timeouts plus 30 s per pass: a pass of many
//! emails to a slow server outlived it, and a second notifier sent the same emails again.

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
    /// Held by a renewal while its UPDATE runs; `true` once the pass records its outcomes.
    /// The outcomes' transaction and a renewal touch the same rows in different orders:
    /// run together they can deadlock, and PostgreSQL then aborts the outcomes, whose
    /// emails another pass sends again.
    finished: Arc<tokio::sync::Mutex<bool>>,
    renewer: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Holds the rows claimed with `token` at `claimed` (taken before the claim), renewing
    /// them every `length / 3` until dropped.
    pub fn hold(
        db: DatabaseConnection,
        clock: Arc<dyn Clock>,
        token: Uuid,
        length: Duration,
        claimed: Instant,
        renewals: prometheus::IntCounterVec,
    ) -> Lease {
        let valid_until = Arc::new(Mutex::new(claimed + length));
        let until = valid_until.clone();
        let finished = Arc::new(tokio::sync::Mutex::new(false));
        let gate = finished.clone();
        let renewer = tokio::spawn(async move {
            loop {
                tokio::time::sleep(length / 3).await;
                let done = gate.lock().await;
                if *done {
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
                    Ok(_) => {
                        *until.lock().unwrap_or_else(|e| e.into_inner()) = started + length;
                        renewals.with_label_values(&["renewed"]).inc();
                    }
                    Err(e) => {
                        renewals.with_label_values(&["failed"]).inc();
                        tracing::warn!(error = %e, "renewing the lease on claimed deliveries failed; sending stops before it runs out");
                    }
                }
                drop(done);
            }
        });
        Lease { token, valid_until, finished, renewer }
    }

    /// Ends the renewals, after any that is running: called before the outcomes are
    /// recorded, which then filter by the token (another pass that took a row over keeps it).
    pub async fn finish(&self) {
        *self.finished.lock().await = true;
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
