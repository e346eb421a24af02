//! Broker administration through the Kafka Admin API, as an administrator (a super user or
//! a user allowed to create topics and ACLs): the topics of a deployment with their
//! replication, and the ACLs of [`feepay_runtime::kafka::access`]. `receiptctl broker`, the
//! tests and the benchmark use it; no service links it (services never create topics or
//! grant themselves anything).

mod ffi;

use feepay_runtime::kafka::access::{Grant, Operation, Pattern, Resource};
use feepay_runtime::kafka::client_config;
use feepay_runtime::settings::KafkaSettings;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::bindings as rd;
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use std::ffi::CString;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("broker: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("creating topic {topic}: {code}")]
    Topic { topic: String, code: RDKafkaErrorCode },
    #[error("ACL {grant}: {reason}")]
    Acl { grant: String, reason: String },
    #[error("ACL request: {0}")]
    Request(String),
    #[error("a name with a NUL byte: {0:?}")]
    Name(String),
    #[error("the administration thread failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// How topics are created.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub partitions: i32,
    pub replication: i32,
    /// `min.insync.replicas`: with producers' `acks=all`, how many replicas must have a
    /// record before it is acknowledged (2 of 3 survives one broker down, loses nothing).
    pub min_insync_replicas: Option<i32>,
    /// `retention.ms`; `None` keeps the broker's default.
    pub retention_ms: Option<i64>,
}

impl TopicSpec {
    /// One broker (the local stack): replication 1.
    pub fn single(partitions: i32) -> Self {
        TopicSpec { partitions, replication: 1, min_insync_replicas: None, retention_ms: None }
    }
}

fn admin(s: &KafkaSettings) -> Result<AdminClient<DefaultClientContext>, AdminError> {
    Ok(client_config(s).create()?)
}

/// Creates the topics that do not exist yet; returns the names it created.
pub async fn create_topics(s: &KafkaSettings, topics: &[String], spec: &TopicSpec) -> Result<Vec<String>, AdminError> {
    let admin = admin(s)?;
    let min_isr = spec.min_insync_replicas.map(|n| n.to_string());
    let retention = spec.retention_ms.map(|n| n.to_string());
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| {
            let mut n = NewTopic::new(t, spec.partitions, TopicReplication::Fixed(spec.replication));
            if let Some(v) = &min_isr {
                n = n.set("min.insync.replicas", v);
            }
            if let Some(v) = &retention {
                n = n.set("retention.ms", v);
            }
            n
        })
        .collect();
    let results = admin.create_topics(&new, &AdminOptions::new().operation_timeout(Some(TIMEOUT))).await?;
    let mut created = Vec::new();
    for r in results {
        match r {
            Ok(topic) => created.push(topic),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(AdminError::Topic { topic, code }),
        }
    }
    Ok(created)
}

/// Deletes topics (missing ones are fine).
pub async fn delete_topics(s: &KafkaSettings, topics: &[String]) -> Result<(), AdminError> {
    if topics.is_empty() {
        return Ok(());
    }
    let admin = admin(s)?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let results = admin.delete_topics(&names, &AdminOptions::new().operation_timeout(Some(TIMEOUT))).await?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((topic, code)) => return Err(AdminError::Topic { topic, code }),
        }
    }
    Ok(())
}

fn cstring(s: &str) -> Result<CString, AdminError> {
    CString::new(s).map_err(|_| AdminError::Name(s.to_string()))
}

fn acl_of(g: &Grant) -> Result<ffi::Acl, AdminError> {
    Ok(ffi::Acl {
        restype: match g.resource {
            Resource::Topic => rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC,
            Resource::Group => rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_GROUP,
        },
        name: cstring(&g.name)?,
        pattern: match g.pattern {
            Pattern::Literal => rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_LITERAL,
            Pattern::Prefixed => rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_PREFIXED,
        },
        principal: Some(cstring(&g.principal())?),
        operation: match g.operation {
            Operation::Read => rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_READ,
            Operation::Write => rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_WRITE,
            Operation::Describe => rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_DESCRIBE,
        },
        permission: rd::rd_kafka_AclPermissionType_t::RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW,
    })
}

/// Creates the grants (an existing identical ACL is fine) and returns once the broker
/// enforces them: the controller commits an ACL before it answers, but a broker applies it
/// from the metadata log a moment later, and a client that connects in between is refused.
pub async fn grant(s: &KafkaSettings, grants: &[Grant]) -> Result<(), AdminError> {
    if grants.is_empty() {
        return Ok(());
    }
    let acls = grants.iter().map(acl_of).collect::<Result<Vec<_>, _>>()?;
    let s = s.clone();
    let names: Vec<String> =
        grants.iter().map(|g| format!("{} {:?} {:?} {}", g.principal(), g.operation, g.resource, g.name)).collect();
    tokio::task::spawn_blocking(move || {
        let admin = admin(&s)?;
        let results = ffi::create_acls(admin.inner(), &acls, TIMEOUT).map_err(AdminError::Request)?;
        for (name, r) in names.iter().zip(results) {
            if let Some(reason) = r {
                return Err(AdminError::Acl { grant: name.clone(), reason });
            }
        }
        let deadline = std::time::Instant::now() + TIMEOUT;
        for (name, acl) in names.iter().zip(&acls) {
            while ffi::count_acls(admin.inner(), acl, TIMEOUT).map_err(AdminError::Request)? == 0 {
                if std::time::Instant::now() > deadline {
                    return Err(AdminError::Acl {
                        grant: name.clone(),
                        reason: format!("not in force after {TIMEOUT:?}"),
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    })
    .await?
}

/// Removes every ACL on these topics and on consumer groups starting with these prefixes
/// (whoever they were for): the clean-up after a test or a benchmark run.
pub async fn revoke_all_on(
    s: &KafkaSettings,
    topics: &[String],
    group_prefixes: &[String],
) -> Result<usize, AdminError> {
    let any = |restype, name: &str, pattern| -> Result<ffi::Acl, AdminError> {
        Ok(ffi::Acl {
            restype,
            name: cstring(name)?,
            pattern,
            principal: None,
            operation: rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_ANY,
            permission: rd::rd_kafka_AclPermissionType_t::RD_KAFKA_ACL_PERMISSION_TYPE_ANY,
        })
    };
    let mut filters = Vec::new();
    for t in topics {
        filters.push(any(
            rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC,
            t,
            rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_LITERAL,
        )?);
    }
    for g in group_prefixes {
        filters.push(any(
            rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_GROUP,
            g,
            rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_PREFIXED,
        )?);
    }
    if filters.is_empty() {
        return Ok(0);
    }
    let s = s.clone();
    tokio::task::spawn_blocking(move || {
        let admin = admin(&s)?;
        ffi::delete_acls(admin.inner(), &filters, TIMEOUT).map_err(AdminError::Request)
    })
    .await?
}
