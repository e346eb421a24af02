//! How long a consumer group of the services takes to hand partitions over, under each
//! group protocol the services offer (`FEEPAY_KAFKA_GROUP_PROTOCOL`): the classic protocol
//! with cooperative-sticky assignment, and KIP-848's consumer protocol. This is the figure
//! the default was chosen by (README, "Running on your own Kafka").
//!
//! Two members run as separate processes (this binary with `--member`), built by the
//! services' own `feepay_runtime::consumer::group_consumer`, on a topic of their own. For
//! each protocol the run measures, with the parent's monotonic clock on the lines the
//! members print:
//! - **join**: B starts while A owns every partition → both own some;
//! - **leave**: B closes (as on SIGTERM) → A owns every partition;
//! - **crash**: B is killed with SIGKILL → A owns every partition (bounded below by the
//!   session timeout: the classic protocol's `FEEPAY_KAFKA_SESSION_TIMEOUT_MS`, the broker's
//!   `group.consumer.session.timeout.ms` under KIP-848);
//! - **restart**: B, a static member (`group.instance.id`), is killed and started again at
//!   once → B owns its share again.
//!
//! `target/release/feepay-rebalance [--rounds 3]` against the local stack (`make up`).

#![allow(clippy::print_stdout)]

use anyhow::{bail, Context};
use clap::Parser;
use feepay_runtime::consumer::{group_consumer, is_fatal, ConsumerState};
use feepay_runtime::settings::{GroupProtocol, KafkaSettings, Secret};
use rdkafka::consumer::Consumer;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(name = "feepay-rebalance")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Where the local broker's users keep their passwords (the run acts as `admin`).
    #[arg(long, default_value = ".local/kafka/users")]
    kafka_users: PathBuf,
    /// Partitions of the measured topic.
    #[arg(long, default_value_t = 12)]
    partitions: i32,
    /// Rounds of join, leave and crash per protocol.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Session timeout of the classic protocol, as the services' default.
    #[arg(long, default_value_t = 6000)]
    session_timeout_ms: u32,
    /// Run as one member (internal).
    #[arg(long, hide = true)]
    member: Option<String>,
    #[arg(long, hide = true, default_value = "")]
    topic: String,
    #[arg(long, hide = true, default_value = "")]
    group: String,
    #[arg(long, hide = true, default_value = "classic")]
    protocol: String,
    #[arg(long, hide = true)]
    instance: Option<String>,
}

fn settings(args: &Args, group: &str, protocol: GroupProtocol) -> anyhow::Result<KafkaSettings> {
    let file = args.kafka_users.join("admin.password");
    let password = std::fs::read_to_string(&file).with_context(|| format!("{} (made by make up)", file.display()))?;
    let mut k = KafkaSettings::from_env("feepay-rebalance")?;
    k.brokers = args.brokers.clone();
    k.security_protocol = "sasl_plaintext".into();
    k.sasl_mechanism = Some("SCRAM-SHA-512".into());
    k.sasl_username = Some("admin".into());
    k.sasl_password = Secret::new(password.trim().to_string());
    k.group_id = group.to_string();
    k.session_timeout_ms = args.session_timeout_ms;
    k.group_protocol = protocol;
    k.group_instance_id = args.instance.clone();
    Ok(k)
}

fn protocol_of(name: &str) -> anyhow::Result<GroupProtocol> {
    Ok(match name {
        "classic" => GroupProtocol::Classic,
        "consumer" => GroupProtocol::Consumer,
        other => bail!("unknown group protocol {other}"),
    })
}

/// One member: prints `owns N` whenever its assignment changes; closes the consumer (and so
/// leaves the group) when its standard input ends.
async fn member(args: &Args) -> anyhow::Result<()> {
    let k = settings(args, &args.group, protocol_of(&args.protocol)?)?;
    let state = Arc::new(ConsumerState::new(Duration::from_secs(3600)));
    let handle = group_consumer(&k, &[args.topic.as_str()], state.clone())?;
    let (closed_tx, mut closed) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        let _ = closed_tx.send(());
    });
    let mut last = usize::MAX;
    loop {
        let c = handle.get();
        tokio::select! {
            _ = &mut closed => break,
            r = tokio::time::timeout(Duration::from_millis(50), c.recv()) => {
                if let Ok(Err(e)) = r {
                    if is_fatal(&e) {
                        // A static member fenced (KIP-848 fences the newcomer while the old
                        // instance's session lasts): join again, as the services do.
                        drop(c);
                        handle.renew()?;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }
        let n = state.assignment().len();
        if n != last {
            last = n;
            println!("owns {n}");
            std::io::stdout().flush()?;
        }
    }
    let c = handle.get();
    c.unsubscribe();
    drop(c);
    drop(handle);
    println!("closed");
    Ok(())
}

struct Member {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
}

/// What the members said, timestamped on arrival.
type Said = mpsc::Receiver<(char, String, Instant)>;

fn spawn(
    args: &Args,
    name: char,
    (topic, group, protocol): (&str, &str, &str),
    instance: Option<&str>,
    tx: mpsc::Sender<(char, String, Instant)>,
) -> anyhow::Result<Member> {
    let mut cmd = Command::new(std::env::current_exe()?);
    if let Some(id) = instance {
        cmd.args(["--instance", id]);
    }
    let mut child = cmd
        .args(["--member", &name.to_string(), "--topic", topic, "--group", group, "--protocol", protocol])
        .arg("--brokers")
        .arg(&args.brokers)
        .arg("--kafka-users")
        .arg(&args.kafka_users)
        .arg("--session-timeout-ms")
        .arg(args.session_timeout_ms.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().context("member stdout")?;
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send((name, line, Instant::now())).is_err() {
                break;
            }
        }
    });
    let stdin = child.stdin.take();
    Ok(Member { child, stdin })
}

/// Waits until the owned counts satisfy `done`; returns when they first did.
fn until(
    said: &Said,
    owns: &mut [usize; 2],
    what: &str,
    done: impl Fn(&[usize; 2]) -> bool,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left =
            deadline.checked_duration_since(Instant::now()).with_context(|| format!("no {what} within 120 s"))?;
        let (who, line, at) = said.recv_timeout(left).with_context(|| format!("no {what} within 120 s"))?;
        if let Some(n) = line.strip_prefix("owns ") {
            owns[usize::from(who == 'B')] = n.parse()?;
            if done(owns) {
                return Ok(at);
            }
        }
    }
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

async fn measure(args: &Args, protocol: &str) -> anyhow::Result<Vec<[u128; 4]>> {
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let topic = format!("rebalance-{run}");
    let group = format!("rebalance-{protocol}-{run}");
    let admin = settings(args, "feepay-rebalance", GroupProtocol::Classic)?;
    feepay_broker_admin::create_topics(
        &admin,
        std::slice::from_ref(&topic),
        &feepay_broker_admin::TopicSpec::single(args.partitions),
    )
    .await?;
    let p = usize::try_from(args.partitions)?;
    let (tx, said) = mpsc::channel();
    let mut owns = [0usize; 2];
    let mut a = spawn(args, 'A', (&topic, &group, protocol), None, tx.clone())?;
    until(&said, &mut owns, "first assignment", |o| o[0] == p)?;
    let mut rounds = Vec::new();
    for _ in 0..args.rounds {
        let t = Instant::now();
        let mut b = spawn(args, 'B', (&topic, &group, protocol), None, tx.clone())?;
        let join = until(&said, &mut owns, "join", |o| o[0] > 0 && o[1] > 0 && o[0] + o[1] == p)? - t;
        let t = Instant::now();
        drop(b.stdin.take());
        let leave = until(&said, &mut owns, "takeover after a leave", |o| o[0] == p)? - t;
        b.child.wait()?;
        owns[1] = 0;
        let mut b = spawn(args, 'B', (&topic, &group, protocol), None, tx.clone())?;
        until(&said, &mut owns, "join", |o| o[0] > 0 && o[1] > 0 && o[0] + o[1] == p)?;
        let t = Instant::now();
        b.child.kill()?;
        b.child.wait()?;
        let crash = until(&said, &mut owns, "takeover after a crash", |o| o[0] == p)? - t;
        owns[1] = 0;
        // A static member (the issuers' `FEEPAY_KAFKA_GROUP_INSTANCE_ID`) killed and started
        // again at once, as a supervisor restarts it.
        let id = format!("b-{run}-{}", rounds.len());
        let mut b = spawn(args, 'B', (&topic, &group, protocol), Some(&id), tx.clone())?;
        until(&said, &mut owns, "join", |o| o[0] > 0 && o[1] > 0 && o[0] + o[1] == p)?;
        let t = Instant::now();
        b.child.kill()?;
        b.child.wait()?;
        owns[1] = 0;
        let mut b = spawn(args, 'B', (&topic, &group, protocol), Some(&id), tx.clone())?;
        let restart = until(&said, &mut owns, "a static member back", |o| o[1] > 0 && o[0] + o[1] == p)? - t;
        b.child.kill()?;
        b.child.wait()?;
        owns[1] = 0;
        until(&said, &mut owns, "takeover after a crash", |o| o[0] == p)?;
        rounds.push([ms(join), ms(leave), ms(crash), ms(restart)]);
    }
    drop(a.stdin.take());
    a.child.wait()?;
    feepay_broker_admin::delete_topics(&admin, &[topic]).await?;
    Ok(rounds)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.member.is_some() {
        return member(&args).await;
    }
    println!(
        "partitions {}, classic session timeout {} ms, {} rounds",
        args.partitions, args.session_timeout_ms, args.rounds
    );
    println!(
        "{:<9} {:>8} {:>8} {:>8} {:>8}   (ms: B joins / B leaves / B killed → A owns all / static B killed and restarted → B owns its share)",
        "protocol", "join", "leave", "crash", "restart"
    );
    for protocol in ["classic", "consumer"] {
        for r in measure(&args, protocol).await? {
            println!("{protocol:<9} {:>8} {:>8} {:>8} {:>8}", r[0], r[1], r[2], r[3]);
        }
    }
    Ok(())
}
