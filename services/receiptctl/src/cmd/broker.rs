//! `receiptctl broker`: the topics and ACLs of a deployment, from the one list of who may do
//! what ([`feepay_runtime::kafka::access`]). `setup` applies them as the broker's
//! administrator (the `FEEPAY_KAFKA_*` settings name an admin user); `acls` prints them as
//! Kafka's own commands for a cluster run by someone else.

use clap::{Args, Subcommand};
use feepay_broker_admin::TopicSpec;
use feepay_runtime::kafka::access::{grants, Role};
use feepay_runtime::settings::{catalog, dlq_topic, KafkaSettings, Topics};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum BrokerCmd {
    /// Create the missing topics and grant every role its ACLs, as the broker's
    /// administrator (FEEPAY_KAFKA_SASL_USERNAME of a user allowed to create topics and ACLs).
    Setup(SetupArgs),
    /// Print the ACLs as Kafka's `kafka-acls.sh` commands and the users as
    /// `kafka-configs.sh` commands, to run against a cluster.
    Acls(AclsArgs),
}

#[derive(Debug, Args)]
pub struct Names {
    /// Broker user of a role, as ROLE=USER (roles: issuer, notifier, assessor, operator,
    /// centre; default feepay-<role>).
    #[arg(long = "user", value_parser = role_value)]
    pub users: Vec<(Role, String)>,
    /// Consumer group prefix of a role, as ROLE=GROUP (default: the role's user name, the
    /// services' default group).
    #[arg(long = "group", value_parser = role_value)]
    pub groups: Vec<(Role, String)>,
}

impl Names {
    fn user(&self, role: Role) -> String {
        self.users.iter().rev().find(|(r, _)| *r == role).map_or(role.default_user().to_string(), |(_, u)| u.clone())
    }
    fn group(&self, role: Role) -> String {
        self.groups.iter().rev().find(|(r, _)| *r == role).map_or(role.default_user().to_string(), |(_, g)| g.clone())
    }
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Partitions of each topic.
    #[arg(long, env = catalog::KAFKA_PARTITIONS.name, default_value = catalog::KAFKA_PARTITIONS.value())]
    pub partitions: i32,
    /// Replicas of each partition (3 on a production cluster; 1 on a single local broker).
    #[arg(long, default_value_t = 3)]
    pub replication: i32,
    /// min.insync.replicas of each topic: with the producers' acks=all, a record is
    /// acknowledged once this many replicas have it (2 of 3 survives a broker down).
    #[arg(long, default_value_t = 2)]
    pub min_insync: i32,
    /// Days dead letters are kept (the other topics keep the broker's retention).
    #[arg(long, default_value_t = 30)]
    pub dead_letter_days: i64,
    #[command(flatten)]
    pub names: Names,
}

#[derive(Debug, Args)]
pub struct AclsArgs {
    /// Bootstrap servers to put in the commands.
    #[arg(long, env = catalog::KAFKA_BROKERS.name, default_value = catalog::KAFKA_BROKERS.value())]
    pub bootstrap: String,
    /// The admin client's properties file to put in the commands.
    #[arg(long, default_value = "admin.properties")]
    pub command_config: String,
    #[command(flatten)]
    pub names: Names,
}

fn role_value(s: &str) -> Result<(Role, String), String> {
    let (role, name) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected ROLE=NAME"))?;
    let role = Role::parse(role)
        .ok_or_else(|| format!("{role:?}: not a role (issuer, notifier, assessor, operator, centre)"))?;
    if name.is_empty() {
        return Err("an empty name".into());
    }
    Ok((role, name.to_string()))
}

pub async fn run(out: &mut impl Write, cmd: BrokerCmd) -> anyhow::Result<ExitCode> {
    let topics = Topics::from_env();
    match cmd {
        BrokerCmd::Setup(a) => setup(out, &topics, a).await,
        BrokerCmd::Acls(a) => {
            acls(out, &topics, &a)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn setup(out: &mut impl Write, topics: &Topics, a: SetupArgs) -> anyhow::Result<ExitCode> {
    let kafka = KafkaSettings::from_env("receiptctl")?;
    let dead_letters: Vec<String> = topics.consumed().into_iter().map(dlq_topic).collect();
    let plain: Vec<String> = topics.all().into_iter().filter(|t| !dead_letters.contains(t)).collect();
    let spec = TopicSpec {
        partitions: a.partitions,
        replication: a.replication,
        min_insync_replicas: Some(a.min_insync),
        retention_ms: None,
    };
    let mut created = feepay_broker_admin::create_topics(&kafka, &plain, &spec).await?;
    let dlq_spec = TopicSpec { retention_ms: Some(a.dead_letter_days * 86_400_000), ..spec };
    created.extend(feepay_broker_admin::create_topics(&kafka, &dead_letters, &dlq_spec).await?);
    writeln!(
        out,
        "topics: {} created, {} already there ({} partitions, replication {}, min.insync.replicas {}; dead letters kept {} days)",
        created.len(),
        topics.all().len() - created.len(),
        a.partitions,
        a.replication,
        a.min_insync,
        a.dead_letter_days
    )?;
    for role in Role::ALL {
        let user = a.names.user(role);
        let g = grants(role, &user, topics, &a.names.group(role));
        feepay_broker_admin::grant(&kafka, &g).await?;
        writeln!(out, "ACLs: {role:<9} User:{user:<18} {} rules", g.len())?;
    }
    writeln!(out, "the lookup service has no broker user; every other user has only the rules above")?;
    Ok(ExitCode::SUCCESS)
}

fn acls(out: &mut impl Write, topics: &Topics, a: &AclsArgs) -> anyhow::Result<()> {
    writeln!(out, "# Users (SCRAM-SHA-512): one per role; choose each password and give it to that process alone.")?;
    let mut users = BTreeMap::new();
    for role in Role::ALL {
        users.insert(a.names.user(role), role);
    }
    for (user, role) in &users {
        writeln!(
            out,
            "kafka-configs.sh --bootstrap-server {} --command-config {} --alter --entity-type users --entity-name {user} --add-config 'SCRAM-SHA-512=[password=<{role} password>]'",
            a.bootstrap, a.command_config
        )?;
    }
    for role in Role::ALL {
        writeln!(out, "\n# {role}: reads {}; writes {}", list(&role.reads(topics)), list(&role.writes(topics)))?;
        for g in grants(role, &a.names.user(role), topics, &a.names.group(role)) {
            writeln!(out, "{}", g.kafka_acls_command(&a.bootstrap, &a.command_config))?;
        }
    }
    Ok(())
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "nothing".into()
    } else {
        v.join(", ")
    }
}
