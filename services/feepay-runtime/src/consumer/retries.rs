//! Retries of parked events an operator asked for, and replays of dead letters: applied by
//! the owning service through the same decode and apply as consumed events. A replay is
//! applied only when it is made of a dead letter this service recorded (`dead_letters`,
//! row written by the service itself) and its body is that record's value or an edit of
//! the same event (see [`dead_letter::check_replay`]); otherwise it is parked again as
//! `replay_refused` with the reason.

use super::{Driver, Failure, Handler, Record};
use crate::dead_letter;
use crate::parking::{self, ParkReason, Parked};

impl<H: Handler> Driver<H> {
    /// Applies the parked events of this service an operator asked to retry, through the
    /// same decode and apply as consumed events. Returns how many were tried.
    pub async fn retry_requested(&self) -> Result<usize, sea_orm::DbErr> {
        let automatic = parking::retry_automatically(&self.db, self.service, self.clock.now()).await?;
        if automatic > 0 {
            tracing::info!(events = automatic, "parked events whose cause may have gone retried automatically");
        }
        let requested = parking::requested(&self.db, self.service, 50).await?;
        let n = requested.len();
        for p in requested {
            let headers: Vec<(String, Vec<u8>)> = p.headers();
            let text = |name: &str| {
                headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .and_then(|(_, v)| std::str::from_utf8(v).ok())
            };
            let record = Record {
                topic: &p.topic,
                partition: p.partition,
                offset: p.offset,
                key: &p.record_key,
                ce_type: text("ce_type"),
                content_type: text("content-type"),
                payload: Some(&p.payload),
            };
            // Why a replay may not be applied at all, before anything is decoded.
            let refused = match p.reason_code == parking::REPLAY {
                true => self.replayable(&p, &record).await?.err(),
                false => None,
            };
            let outcome = match (refused, self.handler.decode(&record)) {
                (Some(why), _) => Err(ParkReason::new("replay_refused", why)),
                (None, Err(e)) => Err(ParkReason::new("undecodable", e.to_string())),
                // A replay is allowed for the agency it was requested for (the database
                // checked that agency against the operator's scope), and no other.
                (None, Ok(item)) if p.reason_code == parking::REPLAY && self.handler.agency(&item) != p.agency_code => {
                    Err(ParkReason::new(
                        "replay_refused",
                        format!(
                            "the replayed event concerns agency {}, but the replay was requested for {}",
                            self.handler.agency(&item).unwrap_or_else(|| "(none)".into()),
                            p.agency_code.clone().unwrap_or_else(|| "(none)".into())
                        ),
                    ))
                }
                (None, Ok(item)) => match self.handler.apply(std::slice::from_ref(&item)).await {
                    Ok(applied) => match applied.park.into_iter().next() {
                        Some((_, reason)) => Err(reason),
                        None => {
                            for (topic, outcome, n) in applied.outcomes {
                                self.metrics.processed.with_label_values(&[&topic, outcome]).inc_by(n);
                            }
                            Ok(())
                        }
                    },
                    Err(Failure::Poison(e)) => Err(ParkReason::new("unexpected_error", e)),
                    // Not the event's fault: leave the request for the next pass.
                    Err(Failure::Transient(e)) => {
                        tracing::warn!(parked = p.id, error = %e, "retry of a parked event failed transiently");
                        continue;
                    }
                },
            };
            match outcome {
                Ok(()) => {
                    parking::resolve(&self.db, p.id, self.clock.now()).await?;
                    tracing::info!(parked = p.id, subject = %p.subject, "parked event retried and applied");
                }
                Err(reason) => {
                    parking::park_again(&self.db, p.id, &reason, self.clock.now()).await?;
                    self.metrics.parked.with_label_values(&[&p.topic, reason.code]).inc();
                    tracing::warn!(parked = p.id, subject = %p.subject, reason = reason.code, detail = %reason.detail, "parked event failed again");
                }
            }
        }
        Ok(n)
    }

    /// Whether replay request `p` may be applied (`Err` says why not); a database error is
    /// returned as such, to try again on the next pass.
    async fn replayable(&self, p: &Parked, record: &Record<'_>) -> Result<Result<(), String>, sea_orm::DbErr> {
        let Some(id) = p.dead_letter_id else {
            return Ok(Err("the replay names no dead letter this service recorded".into()));
        };
        let Some(dl) = dead_letter::record::get(&self.db, id).await? else {
            return Ok(Err(format!("dead letter {id} is not on record for {}", self.service)));
        };
        if (dl.topic.as_str(), dl.partition, dl.offset) != (p.topic.as_str(), p.partition, p.offset) {
            return Ok(Err(format!("the replay is not of the record dead letter {id} names")));
        }
        let now = self.handler.identity(record);
        Ok(dead_letter::check_replay(&dl, self.service, &p.payload, now.as_ref()))
    }
}
