//! Who may do what on the broker: one broker user per process, with ACLs on its own topics
//! and consumer group only (least privilege). The list is data, used three ways: printed as
//! Kafka's own `kafka-acls` commands for a managed cluster (`receiptctl broker acls`),
//! applied through the Admin API (`receiptctl broker setup`, the tests, the benchmark), and
//! read by each service to wait at start-up for exactly the topics it uses.
//!
//! | user | reads (and its group) | writes |
//! | --- | --- | --- |
//! | issuer | payments succeeded and refunded | receipts issued, cancelled, updated; payments rejected and waived; tax documents; its dead letters |
//! | notifier | receipts issued, cancelled, updated; payments waived | notifications sent and failed; its dead letters |
//! | assessor | assessment requests | assessments; its dead letters |
//! | centre (the centre's own system) | assessments, rejections, waivers, receipts, notifications, tax documents | payments, refunds, assessment requests |
//!
//! The lookup service and the operators (`receiptctl`) have no broker user at all: operators
//! read dead letters from PostgreSQL (`dead_letters`, scoped by agency), not from the topics. Topics are created by an administrator
//! (`receiptctl broker setup`), not by the services, which only check that theirs exist.
//! Idempotent producers need only WRITE on their topics (Kafka 3.0+, KIP-679).

use crate::settings::{dlq_topic, Topics};
use std::fmt;

/// A process that connects to the broker, with the user name it has by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Issuer,
    Notifier,
    Assessor,
    /// A public administration centre's system (or the national portal's connector):
    /// publishes payments and reads what comes back. The demo and the benchmark act as one.
    Centre,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Issuer, Role::Notifier, Role::Assessor, Role::Centre];

    /// The default broker user (and consumer group prefix) of the role.
    pub fn default_user(self) -> &'static str {
        match self {
            Role::Issuer => "feepay-issuer",
            Role::Notifier => "feepay-notifier",
            Role::Assessor => "feepay-assessor",
            Role::Centre => "feepay-centre",
        }
    }

    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }

    /// Short name: `issuer`, `notifier`, ...
    pub fn name(self) -> &'static str {
        &self.default_user()["feepay-".len()..]
    }

    /// Topics the role consumes.
    pub fn reads(self, t: &Topics) -> Vec<String> {
        let v: Vec<&String> = match self {
            Role::Issuer => vec![&t.payments_succeeded, &t.payments_refunded],
            Role::Notifier => vec![&t.receipts_issued, &t.receipts_cancelled, &t.receipts_updated, &t.payments_waived],
            Role::Assessor => vec![&t.assessment_requested],
            Role::Centre => vec![
                &t.assessed,
                &t.payments_rejected,
                &t.payments_waived,
                &t.receipts_issued,
                &t.receipts_cancelled,
                &t.receipts_updated,
                &t.notifications_sent,
                &t.notifications_failed,
                &t.tax_documents,
            ],
        };
        v.into_iter().cloned().collect()
    }

    /// Topics the role produces to, its dead-letter topics included.
    pub fn writes(self, t: &Topics) -> Vec<String> {
        let mut v: Vec<String> = match self {
            Role::Issuer => vec![
                t.receipts_issued.clone(),
                t.receipts_cancelled.clone(),
                t.receipts_updated.clone(),
                t.payments_rejected.clone(),
                t.payments_waived.clone(),
                t.tax_documents.clone(),
            ],
            Role::Notifier => vec![t.notifications_sent.clone(), t.notifications_failed.clone()],
            Role::Assessor => vec![t.assessed.clone()],
            Role::Centre => {
                vec![t.payments_succeeded.clone(), t.payments_refunded.clone(), t.assessment_requested.clone()]
            }
        };
        if matches!(self, Role::Issuer | Role::Notifier | Role::Assessor) {
            v.extend(self.reads(t).iter().map(|r| dlq_topic(r)));
        }
        v
    }

    /// Every topic the role touches: what a service waits for at start-up.
    pub fn topics(self, t: &Topics) -> Vec<String> {
        let mut v = self.reads(t);
        v.extend(self.writes(t));
        v.sort();
        v.dedup();
        v
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What an ACL is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    Topic,
    Group,
}

/// How the resource name matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Pattern {
    Literal,
    /// Every name that starts with it: a role's consumer groups (`feepay-issuer`,
    /// `feepay-issuer-canary`, ...).
    Prefixed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    Read,
    Write,
    Describe,
}

/// One ALLOW rule: `User:<user>` may `<operation>` the `<resource>` named `<name>`, from any host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Grant {
    pub user: String,
    pub resource: Resource,
    pub name: String,
    pub pattern: Pattern,
    pub operation: Operation,
}

impl Grant {
    pub fn principal(&self) -> String {
        format!("User:{}", self.user)
    }

    /// The same rule as Kafka's own command (`kafka-acls.sh` from the Kafka distribution).
    pub fn kafka_acls_command(&self, bootstrap: &str, command_config: &str) -> String {
        let resource = match self.resource {
            Resource::Topic => "--topic",
            Resource::Group => "--group",
        };
        let op = match self.operation {
            Operation::Read => "Read",
            Operation::Write => "Write",
            Operation::Describe => "Describe",
        };
        let pattern = match self.pattern {
            Pattern::Literal => "",
            Pattern::Prefixed => " --resource-pattern-type prefixed",
        };
        format!(
            "kafka-acls.sh --bootstrap-server {bootstrap} --command-config {command_config} --add --allow-principal {} --operation {op} {resource} '{}'{pattern}",
            self.principal(),
            self.name
        )
    }
}

/// The grants of one role for these topic names: READ and DESCRIBE on what it reads,
/// WRITE and DESCRIBE on what it writes, READ on its consumer groups (every group whose
/// name starts with `group`).
pub fn grants(role: Role, user: &str, topics: &Topics, group: &str) -> Vec<Grant> {
    let g = |resource, name: &str, pattern, operation| Grant {
        user: user.to_string(),
        resource,
        name: name.to_string(),
        pattern,
        operation,
    };
    let mut v = Vec::new();
    for t in role.reads(topics) {
        v.push(g(Resource::Topic, &t, Pattern::Literal, Operation::Read));
        v.push(g(Resource::Topic, &t, Pattern::Literal, Operation::Describe));
    }
    for t in role.writes(topics) {
        v.push(g(Resource::Topic, &t, Pattern::Literal, Operation::Write));
        v.push(g(Resource::Topic, &t, Pattern::Literal, Operation::Describe));
    }
    // The operator reads by partition and never joins, but librdkafka looks the group's
    // coordinator up all the same.
    v.push(g(Resource::Group, group, Pattern::Prefixed, Operation::Read));
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics() -> Topics {
        Topics::default_names()
    }

    #[test]
    fn only_the_centre_writes_payments_and_only_the_issuer_writes_receipts() {
        let t = topics();
        for role in Role::ALL {
            let w = role.writes(&t);
            assert_eq!(w.contains(&t.payments_succeeded), role == Role::Centre, "{role}");
            assert_eq!(w.contains(&t.receipts_issued), role == Role::Issuer, "{role}");
            assert_eq!(w.contains(&t.notifications_sent), role == Role::Notifier, "{role}");
        }
    }

    #[test]
    fn each_consumer_writes_the_dead_letters_of_what_it_reads() {
        let t = topics();
        assert_eq!(
            Role::Issuer.writes(&t).iter().filter(|w| w.ends_with(".dlq")).collect::<Vec<_>>(),
            ["payments.succeeded.dlq", "payments.refunded.dlq"]
        );
        let every_dlq: Vec<String> = [Role::Issuer, Role::Notifier, Role::Assessor]
            .iter()
            .flat_map(|r| r.writes(&t))
            .filter(|w| w.ends_with(".dlq"))
            .collect();
        assert_eq!(every_dlq.len(), t.consumed().len(), "every consumed topic's dead letters have one writer");
    }

    #[test]
    fn grants_print_as_kafka_acls_commands() {
        let g = grants(Role::Assessor, "feepay-assessor", &topics(), "feepay-assessor");
        let cmds: Vec<String> = g.iter().map(|g| g.kafka_acls_command("k:9092", "admin.properties")).collect();
        assert!(cmds.contains(&"kafka-acls.sh --bootstrap-server k:9092 --command-config admin.properties --add --allow-principal User:feepay-assessor --operation Read --group 'feepay-assessor' --resource-pattern-type prefixed".to_string()), "{cmds:#?}");
        assert!(cmds.contains(&"kafka-acls.sh --bootstrap-server k:9092 --command-config admin.properties --add --allow-principal User:feepay-assessor --operation Write --topic 'fees.assessed'".to_string()), "{cmds:#?}");
        assert_eq!(g.len(), 2 + 2 + 2 + 1, "read+describe, write+describe ×2, group");
    }
}
