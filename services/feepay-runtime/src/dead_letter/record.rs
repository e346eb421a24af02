//! Dead letters on record: the service that dead-letters a record writes it to
//! `dead_letters` (migration 0018) before it goes to the `.dlq` topic. That row is what an
//! operator reads (under row-level security, by agency) and the only thing a replay can be
//! made of (`feepay_request_replay`); when the owning service applies a replay it checks
//! the body against the row ([`check_replay`]): the recorded value as it is, or an edited
//! body that is the same event, with the same [`Identity`].

use feepay_proto::v1::DeadLetter;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;
use sea_orm::Set;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// What an event is, as its service reads it from the record without validating the rest:
/// its subject, agency and the facts an operator's edit must not change (a payment's id,
/// agency, amounts and currency; a refund's payment and amounts). An operator fixes what
/// made the event undecodable (a payer's identifier, a misspelt field), never what the
/// payment platform is the source of.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub subject: String,
    pub agency: Option<String>,
    pub facts: BTreeMap<String, String>,
}

impl Identity {
    pub fn new(subject: String, agency: Option<String>) -> Self {
        Identity { subject, agency, facts: BTreeMap::new() }
    }

    pub fn fact(mut self, name: &str, value: impl Into<String>) -> Self {
        self.facts.insert(name.to_string(), value.into());
        self
    }

    /// What differs from `other`, named, for the refusal's reason.
    pub fn differences(&self, other: &Identity) -> Vec<String> {
        let mut out = Vec::new();
        if self.subject != other.subject {
            out.push(format!("subject {} became {}", self.subject, other.subject));
        }
        if self.agency != other.agency {
            out.push(format!("agency {:?} became {:?}", self.agency, other.agency));
        }
        for (k, v) in &self.facts {
            let now = other.facts.get(k);
            if now != Some(v) {
                out.push(format!("{k} {v:?} became {:?}", now.map(String::as_str).unwrap_or("(absent)")));
            }
        }
        for k in other.facts.keys().filter(|k| !self.facts.contains_key(*k)) {
            out.push(format!("{k} was added"));
        }
        out
    }
}

/// The `dead_letters` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "dead_letters")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub service: String,
        pub topic: String,
        pub partition: i32,
        pub offset: i64,
        pub record_key: Vec<u8>,
        pub headers: Json,
        pub headers_truncated: bool,
        pub payload: Vec<u8>,
        pub payload_sha256: String,
        pub identity: Option<Json>,
        pub subject: Option<String>,
        pub agency_code: Option<String>,
        pub reason_code: String,
        pub reason: String,
        pub dead_lettered_at: DateTimeUtc,
        pub db_login: Option<String>,
        pub replays: i32,
        pub last_replayed_at: Option<DateTimeUtc>,
        pub last_replayed_by: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl Model {
        /// The record's headers as `(name, value)` pairs.
        pub fn headers(&self) -> Vec<(String, Vec<u8>)> {
            crate::parking::headers_from_json(&self.headers)
        }

        /// What the service read the event to be, if it could.
        pub fn identity(&self) -> Option<super::Identity> {
            self.identity.clone().and_then(|j| serde_json::from_value(j).ok())
        }
    }
}

pub use entity::Model as OnRecord;

/// Writes the dead letter `dl` (before its value moves out, see [`super::send_durably`]),
/// once: a record dead-lettered again after a redelivery keeps its first row.
pub async fn record(db: &impl ConnectionTrait, dl: &DeadLetter, identity: Option<&Identity>) -> Result<(), DbErr> {
    use entity::Column as C;
    let headers = crate::parking::headers_to_json(dl.original_headers.iter().map(|h| (h.key.clone(), h.value.clone())));
    let row = entity::ActiveModel {
        service: Set(dl.service.clone()),
        topic: Set(dl.original_topic.clone()),
        partition: Set(dl.original_partition),
        offset: Set(dl.original_offset),
        record_key: Set(dl.original_key.clone()),
        headers: Set(headers),
        headers_truncated: Set(dl.original_headers_truncated),
        payload: Set(dl.original_value.clone()),
        payload_sha256: Set(dl.original_value_sha256.clone()),
        identity: Set(identity.map(|i| serde_json::to_value(i).unwrap_or_default())),
        subject: Set(identity.map(|i| i.subject.clone())),
        agency_code: Set(identity.and_then(|i| i.agency.clone())),
        reason_code: Set(dl.reason_code.clone()),
        reason: Set(dl.reason.clone()),
        dead_lettered_at: Set(super::dead_lettered_at(dl)),
        ..Default::default()
    };
    entity::Entity::insert(row)
        .on_conflict(OnConflict::columns([C::Service, C::Topic, C::Partition, C::Offset]).do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// One dead letter on record (within the caller's row-level scope).
pub async fn get(db: &impl ConnectionTrait, id: i64) -> Result<Option<OnRecord>, DbErr> {
    entity::Entity::find_by_id(id).one(db).await
}

/// Whether a replay's body may be applied as the event recorded in `dl`: the recorded value
/// itself, or an edited body of the same event (`now`, as the service reads it). Returns
/// why not.
pub fn check_replay(dl: &OnRecord, service: &str, body: &[u8], now: Option<&Identity>) -> Result<(), String> {
    if dl.service != service {
        return Err(format!("dead letter {} was recorded by {}, not by {service}", dl.id, dl.service));
    }
    if hex::encode(Sha256::digest(body)) == dl.payload_sha256 {
        return Ok(());
    }
    let Some(recorded) = dl.identity() else {
        return Err(format!(
            "dead letter {} could not be read as an event, so an edited body cannot be checked against it; \
             the sender must send the event again",
            dl.id
        ));
    };
    let Some(now) = now else {
        return Err("the edited body cannot be read as an event".into());
    };
    let diff = recorded.differences(now);
    if diff.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the edited body is another event than dead letter {}: {}; an edit may fix what made it undecodable, \
             never what the event is",
            dl.id,
            diff.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payment(total: &str) -> Identity {
        Identity::new("payment:PG-1".into(), Some("BN.TTPVHCC".into()))
            .fact("payment_id", "PG-1")
            .fact("total_paid", total)
    }

    fn on_record(body: &[u8], identity: Option<Identity>) -> OnRecord {
        OnRecord {
            id: 7,
            service: "feepay_issuer".into(),
            topic: "payments.succeeded".into(),
            partition: 0,
            offset: 3,
            record_key: b"PG-1".to_vec(),
            headers: serde_json::json!([]),
            headers_truncated: false,
            payload: body.to_vec(),
            payload_sha256: hex::encode(Sha256::digest(body)),
            identity: identity.map(|i| serde_json::to_value(i).unwrap()),
            subject: Some("payment:PG-1".into()),
            agency_code: Some("BN.TTPVHCC".into()),
            reason_code: "invalid".into(),
            reason: "payer.personal_id".into(),
            dead_lettered_at: chrono::DateTime::UNIX_EPOCH,
            db_login: None,
            replays: 0,
            last_replayed_at: None,
            last_replayed_by: None,
        }
    }

    #[test]
    fn the_recorded_body_replays_whatever_could_be_read_of_it() {
        assert_eq!(check_replay(&on_record(b"garbage", None), "feepay_issuer", b"garbage", None), Ok(()));
        let e = check_replay(&on_record(b"garbage", None), "feepay_notifier", b"garbage", None).unwrap_err();
        assert!(e.contains("recorded by feepay_issuer"), "{e}");
    }

    #[test]
    fn an_edit_keeps_the_identity_or_is_refused() {
        let dl = on_record(b"v1", Some(payment("135000")));
        assert_eq!(check_replay(&dl, "feepay_issuer", b"v2", Some(&payment("135000"))), Ok(()));
        let e = check_replay(&dl, "feepay_issuer", b"v2", Some(&payment("1"))).unwrap_err();
        assert!(e.contains("total_paid \"135000\" became \"1\""), "{e}");
        let other = Identity::new("payment:PG-2".into(), Some("BN.TTPVHCC".into()))
            .fact("payment_id", "PG-2")
            .fact("total_paid", "135000");
        let e = check_replay(&dl, "feepay_issuer", b"v2", Some(&other)).unwrap_err();
        assert!(e.contains("subject payment:PG-1 became payment:PG-2"), "{e}");
        assert!(check_replay(&dl, "feepay_issuer", b"v2", None).is_err());
        let unreadable = on_record(b"v1", None);
        let e = check_replay(&unreadable, "feepay_issuer", b"v2", Some(&payment("135000"))).unwrap_err();
        assert!(e.contains("send the event again"), "{e}");
    }
}
