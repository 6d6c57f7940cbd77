//! `cairn`: the Cairn cluster daemon.
//!
//! Flags follow etcd's names (`--name`, `--data-dir`, `--listen-client-urls`, ...), each also
//! settable as `CAIRN_<FLAG>` in the environment. With no flags it starts a working single
//! member on 127.0.0.1:2379 with its data in `./default.cairn`.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::routing::get;
use axum::Json;
use cairn_io_tokio::{MemberConfig, MemberHandle};
use cairn_server::grpc;
use cairn_server::info::ServerInfo;
use clap::Parser;

/// See server/Cargo.toml for why not the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Above this quota, etcd warns (its suggested maximum).
const QUOTA_BYTES_WARN: u64 = 8 * 1024 * 1024 * 1024;

/// The etcd API level Cairn implements; etcd clients read it from Status and /version.
const ETCD_VERSION: &str = "3.4.0";

#[derive(Parser, Debug)]
#[command(
    name = "cairn",
    version,
    about = "Cairn: a strongly consistent key-value store speaking etcd's APIs"
)]
struct Flags {
    /// Without a command, `cairn` runs a member with the flags below.
    #[command(subcommand)]
    command: Option<Command>,
    /// Human-readable name for this member.
    #[arg(long, env = "CAIRN_NAME", default_value = "default")]
    name: String,
    /// Where this member keeps its data.
    #[arg(long, env = "CAIRN_DATA_DIR", default_value = "default.cairn")]
    data_dir: PathBuf,
    /// URLs to listen on for client traffic (comma-separated).
    #[arg(long, env = "CAIRN_LISTEN_CLIENT_URLS", default_value = "http://127.0.0.1:2379")]
    listen_client_urls: String,
    /// This member's client URLs to advertise to the rest of the cluster.
    #[arg(long, env = "CAIRN_ADVERTISE_CLIENT_URLS", default_value = "http://127.0.0.1:2379")]
    advertise_client_urls: String,
    /// URLs to listen on for peer traffic.
    #[arg(long, env = "CAIRN_LISTEN_PEER_URLS", default_value = "http://127.0.0.1:2380")]
    listen_peer_urls: String,
    /// This member's peer URLs to advertise to the rest of the cluster.
    #[arg(long, env = "CAIRN_INITIAL_ADVERTISE_PEER_URLS", default_value = "http://127.0.0.1:2380")]
    initial_advertise_peer_urls: String,
    /// The initial cluster: name=peer-url,... for every member.
    #[arg(long, env = "CAIRN_INITIAL_CLUSTER", default_value = "default=http://127.0.0.1:2380")]
    initial_cluster: String,
    /// `new` for a new cluster, `existing` to join one (membership changes are not supported yet).
    #[arg(long, env = "CAIRN_INITIAL_CLUSTER_STATE", default_value = "new")]
    initial_cluster_state: String,
    /// Distinguishes clusters started with the same member URLs (part of every member id).
    #[arg(long, env = "CAIRN_INITIAL_CLUSTER_TOKEN", default_value = "etcd-cluster")]
    initial_cluster_token: String,
    /// Milliseconds between heartbeats (one Raft tick).
    #[arg(long, env = "CAIRN_HEARTBEAT_INTERVAL", default_value_t = 100)]
    heartbeat_interval: u64,
    /// Milliseconds before a follower that hears no leader starts an election.
    #[arg(long, env = "CAIRN_ELECTION_TIMEOUT", default_value_t = 1000)]
    election_timeout: u64,
    /// Beyond etcd: the leader promotes a learner on its own once it has caught up (etcd's
    /// promotion rule) and stayed so for --auto-promote-window milliseconds.
    #[arg(long, env = "CAIRN_AUTO_PROMOTE_LEARNERS")]
    auto_promote_learners: bool,
    /// Milliseconds a learner must stay caught up before --auto-promote-learners promotes it.
    #[arg(long, env = "CAIRN_AUTO_PROMOTE_WINDOW", default_value_t = 5_000)]
    auto_promote_window: u64,
    /// What to log: debug, info, warn or error (etcd's --log-level).
    #[arg(long, env = "CAIRN_LOG_LEVEL", value_enum, default_value = "info")]
    log_level: LogLevel,
    /// Log lines as text (colours only on a terminal) or as JSON objects, one per line.
    #[arg(long, env = "CAIRN_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Applied entries between snapshots.
    #[arg(long, env = "CAIRN_SNAPSHOT_COUNT", default_value_t = 100_000)]
    snapshot_count: u64,
    /// The store's space quota in bytes (0: etcd's default, 2 GiB). A write that would pass
    /// it is refused ("database space exceeded") and raises the NOSPACE alarm; compact, then
    /// `etcdctl alarm disarm`, to write again.
    #[arg(long, env = "CAIRN_QUOTA_BACKEND_BYTES", default_value_t = 0)]
    quota_backend_bytes: u64,
    /// Largest request accepted, in bytes.
    #[arg(long, env = "CAIRN_MAX_REQUEST_BYTES", default_value_t = cairn_core::config::REQUEST_BYTES_MAX_DEFAULT)]
    max_request_bytes: usize,
    /// Threads that run the member: its Raft loop, peer transport and client front ends (the
    /// storage thread and fjall's workers come on top). 1, the default, runs them all on one
    /// thread, so handing a request to the loop and its answer back never wakes another
    /// thread; more lets the front ends' own work (TLS, HTTP/2, protobuf and JSON encoding) use
    /// more cores; every request is still served by the one loop. See docs/benchmarks.md for
    /// what each costs.
    #[arg(long, env = "CAIRN_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    threads: u16,
    /// periodic or revision (etcd's --auto-compaction-mode).
    #[arg(long, env = "CAIRN_AUTO_COMPACTION_MODE", value_enum, default_value = "periodic")]
    auto_compaction_mode: CompactionMode,
    /// History to keep: for periodic, a duration ("1h", "30m", "90s"; a bare number is hours,
    /// as etcd reads it); for revision, a number of revisions. 0, the default, turns
    /// auto-compaction off.
    #[arg(long, env = "CAIRN_AUTO_COMPACTION_RETENTION", default_value = "0")]
    auto_compaction_retention: String,
    /// The client port's certificate chain (PEM), for https:// client URLs.
    #[arg(long, env = "CAIRN_CERT_FILE")]
    cert_file: Option<PathBuf>,
    /// The key of --cert-file (PEM).
    #[arg(long, env = "CAIRN_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// CAs (PEM) that sign client certificates.
    #[arg(long, env = "CAIRN_TRUSTED_CA_FILE")]
    trusted_ca_file: Option<PathBuf>,
    /// https:// clients must present a certificate signed by --trusted-ca-file.
    #[arg(long, env = "CAIRN_CLIENT_CERT_AUTH")]
    client_cert_auth: bool,
    /// https:// client URLs without --cert-file use a self-signed certificate made in
    /// <data-dir>/fixtures/client (for trying TLS out; clients must skip verification).
    #[arg(long, env = "CAIRN_AUTO_TLS")]
    auto_tls: bool,
    /// The peer port's certificate chain (PEM), presented both ways, for https:// peer URLs.
    #[arg(long, env = "CAIRN_PEER_CERT_FILE")]
    peer_cert_file: Option<PathBuf>,
    /// The key of --peer-cert-file (PEM).
    #[arg(long, env = "CAIRN_PEER_KEY_FILE")]
    peer_key_file: Option<PathBuf>,
    /// CAs (PEM) that sign peers' certificates.
    #[arg(long, env = "CAIRN_PEER_TRUSTED_CA_FILE")]
    peer_trusted_ca_file: Option<PathBuf>,
    /// Peers connecting must present a certificate signed by --peer-trusted-ca-file.
    #[arg(long, env = "CAIRN_PEER_CLIENT_CERT_AUTH")]
    peer_client_cert_auth: bool,
    /// https:// peer URLs without --peer-cert-file use a self-signed certificate made in
    /// <data-dir>/fixtures/peer, and peers do not check each other's (encrypted, not
    /// authenticated: for trying TLS out, as etcd's).
    #[arg(long, env = "CAIRN_PEER_AUTO_TLS")]
    peer_auto_tls: bool,
    /// TLS 1.2 cipher suites offered on both ports, comma-separated IANA names (for instance
    /// TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256); empty: rustls's defaults. TLS 1.3's suites are
    /// always offered, as etcd's (Go's TLS) are.
    #[arg(long, env = "CAIRN_CIPHER_SUITES", default_value = "")]
    cipher_suites: String,
    /// Token type for Authenticate: `simple` (etcd's default). Cairn's tokens are signed, so
    /// every member accepts every member's; `jwt` is not offered.
    #[arg(long, env = "CAIRN_AUTH_TOKEN", default_value = "simple", value_parser = ["simple"])]
    auth_token: String,
    /// Seconds a token from Authenticate stays valid.
    #[arg(long, env = "CAIRN_AUTH_TOKEN_TTL", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    auth_token_ttl: u64,
    /// bcrypt cost for password hashes (4 to 31; etcd's default 10).
    #[arg(long, env = "CAIRN_BCRYPT_COST", default_value_t = 10, value_parser = clap::value_parser!(u32).range(4..=31))]
    bcrypt_cost: u32,
    /// Extra URLs serving only /metrics and /health (comma-separated), as etcd's; the client
    /// URLs serve /metrics too.
    #[arg(long, env = "CAIRN_LISTEN_METRICS_URLS", default_value = "")]
    listen_metrics_urls: String,
    /// Most client connections open at once; more are closed as soon as they connect. 0, the
    /// default: what the open-files limit (`ulimit -n`) leaves after 150 descriptors kept for
    /// storage, snapshots and peers, and those open at start.
    #[arg(long, env = "CAIRN_MAX_CLIENT_CONNECTIONS", default_value_t = 0)]
    max_client_connections: usize,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Backups made by Maintenance.Snapshot (`etcdctl snapshot save FILE`).
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Quotas on key prefixes: the most live keys and bytes (key plus value) under a prefix.
    Quota {
        #[command(subcommand)]
        action: QuotaCommand,
        /// A member's client URL.
        #[arg(long, global = true, default_value = "http://127.0.0.1:2379")]
        endpoint: String,
        /// With auth on: a user with the root role, as `name:password` (etcdctl's --user).
        #[arg(long, global = true)]
        user: Option<String>,
    },
}

#[derive(clap::Subcommand, Debug)]
enum QuotaCommand {
    /// Every quota, with the keys and bytes under its prefix now.
    List,
    /// Sets (or replaces) the quota on a prefix; a bound of 0 is no bound.
    Set {
        prefix: String,
        #[arg(long, default_value_t = 0)]
        bytes: u64,
        #[arg(long, default_value_t = 0)]
        keys: u64,
    },
    /// Removes the quota on a prefix.
    Remove { prefix: String },
}

#[derive(clap::Subcommand, Debug)]
enum SnapshotCommand {
    /// Checks a backup whole and prints its hash (as `etcdctl endpoint hashkv` would print at
    /// its revision), revision, keys and size.
    Status {
        file: PathBuf,
        /// simple, table or json (etcdctl's -w).
        #[arg(short = 'w', long = "write-out", value_enum, default_value = "simple")]
        write_out: WriteOut,
    },
    /// Makes a new member's data dir from a backup: the backup's keys, revisions and leases in
    /// a new cluster of the members named in --initial-cluster. Restore the same file with the
    /// same --initial-cluster and --initial-cluster-token for every member, then start each.
    Restore {
        file: PathBuf,
        /// This member's name in --initial-cluster.
        #[arg(long, default_value = "default")]
        name: String,
        /// The data dir to make; it must not exist or be empty. Default: <name>.cairn.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The new cluster: name=peer-url,... for every member.
        #[arg(long, default_value = "default=http://127.0.0.1:2380")]
        initial_cluster: String,
        /// This member's peer URLs; they must be its URLs in --initial-cluster.
        #[arg(long, default_value = "http://127.0.0.1:2380")]
        initial_advertise_peer_urls: String,
        #[arg(long, default_value = "etcd-cluster")]
        initial_cluster_token: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum CompactionMode {
    Periodic,
    Revision,
}

/// etcd's revision compactor runs every five minutes.
const REVISION_COMPACTION_INTERVAL_MS: u64 = 5 * 60 * 1000;

/// `--auto-compaction-mode` and `--auto-compaction-retention` as etcd reads them.
fn auto_compaction(
    mode: CompactionMode,
    retention: &str,
) -> Result<Option<cairn_core::config::AutoCompaction>, StartError> {
    use cairn_core::config::AutoCompaction;
    let bad = || {
        StartError::Config(format!(
            "--auto-compaction-retention {retention:?}: for periodic, a duration such as 1h, 30m or 90s (a bare number is hours); for revision, a number of revisions"
        ))
    };
    let retention = retention.trim();
    match mode {
        CompactionMode::Revision => match retention.parse::<i64>() {
            Ok(0) => Ok(None),
            Ok(n) if n > 0 => {
                Ok(Some(AutoCompaction::Revision { retain: n, interval_ms: REVISION_COMPACTION_INTERVAL_MS }))
            }
            _ => Err(bad()),
        },
        CompactionMode::Periodic => {
            let ms = match retention.parse::<u64>() {
                Ok(hours) => hours.checked_mul(3_600_000).ok_or_else(bad)?,
                Err(_) => go_duration_ms(retention).ok_or_else(bad)?,
            };
            Ok((ms > 0).then_some(AutoCompaction::Periodic { retention_ms: ms }))
        }
    }
}

/// A Go duration ("1h30m", "90s", "500ms") in milliseconds.
fn go_duration_ms(s: &str) -> Option<u64> {
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, after) = rest.split_at(digits);
        let number: f64 = number.parse().ok()?;
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let ms = match unit {
            "h" => 3_600_000.0,
            "m" => 60_000.0,
            "s" => 1_000.0,
            "ms" => 1.0,
            _ => return None,
        };
        total += number * ms;
        rest = after;
    }
    (total.is_finite() && total >= 0.0 && total < u64::MAX as f64).then_some(total as u64)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum WriteOut {
    Simple,
    Table,
    Json,
}

/// A fatal configuration or startup problem, said plainly.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Node(#[from] cairn_io_tokio::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// How often the runtime's threads hand mimalloc's freed pages back to the OS.
const ALLOCATOR_COLLECT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Hands freed memory back to the OS every `ALLOCATOR_COLLECT_INTERVAL`, from the runtime
/// (the member's loop and front ends, where spikes are allocated and freed). mimalloc purges
/// freed pages only when the thread that freed them next allocates enough, so a member that
/// served a spike (20 clients replaying a 100 MB history from revision 1) and then went quiet
/// kept 2.0 GB after the clients left; with this, 0.23 GB (docs/benchmarks.md, "Memory after a
/// spike"). Purging at every free instead (`mi_option_purge_delay` 0) did as well but cost
/// about 5% of put@32.
fn collect_freed_memory(rt: &tokio::runtime::Runtime) {
    rt.spawn(async {
        let mut every = tokio::time::interval(ALLOCATOR_COLLECT_INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            // SAFETY: mimalloc's collection of the calling thread's freed memory; callable at
            // any time from any thread.
            unsafe { libmimalloc_sys::mi_collect(false) };
        }
    });
}

fn main() {
    let mut flags = Flags::parse();
    init_logging(&flags);
    if let Some(command) = flags.command.take() {
        let done = match command {
            Command::Snapshot(command) => snapshot_command(command),
            Command::Quota { action, endpoint, user } => quota_command(action, &endpoint, user.as_deref()),
        };
        if let Err(e) = done {
            eprintln!("Error: {e}");
            std::process::exit(1);
        }
        return;
    }
    let rt = match flags.threads {
        1 => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        n => tokio::runtime::Builder::new_multi_thread().worker_threads(n.into()).enable_all().build(),
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cairn: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    collect_freed_memory(&rt);
    if let Err(e) = rt.block_on(serve(flags)) {
        eprintln!("cairn: {e}");
        std::process::exit(1);
    }
}

/// FNV-1a: member and cluster ids must be the same on every member, from the same flags.
fn fnv64(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in p.as_bytes().iter().chain(b"\0") {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h.max(1)
}

/// A member's id: from its peer URLs and the cluster token, the same on every member.
fn member_id_of(peer_urls: &[String], token: &str) -> u64 {
    let mut sorted = peer_urls.to_vec();
    sorted.sort();
    let mut parts: Vec<&str> = sorted.iter().map(String::as_str).collect();
    parts.push(token);
    fnv64(&parts)
}

/// A new cluster's id: from its members' ids and the cluster token.
fn cluster_id_of(member_ids: &[u64], token: &str) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let id_strings: Vec<String> = ids.iter().map(|i| format!("{i:x}")).collect();
    let mut parts: Vec<&str> = id_strings.iter().map(String::as_str).collect();
    parts.push(token);
    fnv64(&parts)
}

/// `--initial-cluster`: name=peer-url,... to each name's peer URLs, in flag order.
fn parse_initial_cluster(flag: &str) -> Result<Vec<(String, Vec<String>)>, StartError> {
    let mut cluster: Vec<(String, Vec<String>)> = Vec::new();
    for item in split_urls(flag) {
        let Some((name, url)) = item.split_once('=') else {
            return Err(StartError::Config(format!("--initial-cluster entry {item:?} is not name=url")));
        };
        match cluster.iter_mut().find(|(n, _)| n == name) {
            Some((_, urls)) => urls.push(url.to_string()),
            None => cluster.push((name.to_string(), vec![url.to_string()])),
        }
    }
    Ok(cluster)
}

/// `--auto-tls` / `--peer-auto-tls`: the self-signed pair in `<data-dir>/fixtures/<which>`,
/// for the IP addresses of `urls` (comma-separated lists), made at first start.
fn self_signed(
    data_dir: &Path,
    which: &str,
    urls: [&String; 2],
    flag: &str,
) -> Result<(PathBuf, PathBuf), StartError> {
    let hosts: Vec<String> = urls
        .iter()
        .flat_map(|u| split_urls(u))
        .filter_map(|u| url_addr(&u).ok())
        .map(|a| a.ip().to_string())
        .collect();
    let dir = data_dir.join("fixtures").join(which);
    cairn_server::tls::self_signed(&dir, &hosts).map_err(|e| StartError::Config(format!("{flag}: {e}")))
}

fn split_urls(s: &str) -> Vec<String> {
    s.split(',').map(|u| u.trim().to_string()).filter(|u| !u.is_empty()).collect()
}

/// Logs on stderr: `--log-level` (RUST_LOG, when set, says more precisely what to log),
/// `--log-format text|json` (one JSON object per line), colours only on a terminal.
fn init_logging(flags: &Flags) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| flags.log_level.as_str().into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match flags.log_format {
        LogFormat::Json => builder.json().with_current_span(false).init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// `http://host:port` (or `host:port`) to a socket address.
fn url_addr(url: &str) -> Result<SocketAddr, StartError> {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")).unwrap_or(url);
    let hostport = rest.trim_end_matches('/');
    hostport
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| StartError::Config(format!("cannot resolve URL {url:?} to an address")))
}

async fn serve(flags: Flags) -> Result<(), StartError> {
    if flags.initial_cluster_state != "new" && flags.initial_cluster_state != "existing" {
        return Err(StartError::Config(format!(
            "--initial-cluster-state must be new or existing, not {:?}",
            flags.initial_cluster_state
        )));
    }
    if flags.election_timeout < 5 * flags.heartbeat_interval || flags.heartbeat_interval == 0 {
        return Err(StartError::Config(
            "--election-timeout must be at least 5 times --heartbeat-interval (etcd's rule)".into(),
        ));
    }
    let cluster = parse_initial_cluster(&flags.initial_cluster)?;
    let id_of = |urls: &[String]| member_id_of(urls, &flags.initial_cluster_token);
    let Some((_, my_urls)) = cluster.iter().find(|(n, _)| *n == flags.name) else {
        return Err(StartError::Config(format!("--initial-cluster has no member named {:?}", flags.name)));
    };
    std::fs::create_dir_all(&flags.data_dir)?;
    // Peer TLS when the peer port listens on https:// (etcd's rule).
    let peer_tls = match split_urls(&flags.listen_peer_urls)
        .first()
        .is_some_and(|u| u.starts_with("https://"))
    {
        true => {
            let auto = flags.peer_auto_tls && flags.peer_cert_file.is_none() && flags.peer_key_file.is_none();
            let (cert_file, key_file) = match auto {
                false => (flags.peer_cert_file.clone(), flags.peer_key_file.clone()),
                true => {
                    let urls = [&flags.listen_peer_urls, &flags.initial_advertise_peer_urls];
                    let (cert, key) = self_signed(&flags.data_dir, "peer", urls, "--peer-auto-tls")?;
                    tracing::warn!(cert = %cert.display(), "--peer-auto-tls: peers use self-signed certificates and do not check each other's");
                    (Some(cert), Some(key))
                }
            };
            let flags = cairn_server::tls::TlsFlags {
                cert_file,
                key_file,
                trusted_ca_file: flags.peer_trusted_ca_file.clone(),
                client_cert_auth: flags.peer_client_cert_auth,
                cipher_suites: split_urls(&flags.cipher_suites),
                skip_peer_verification: auto,
            };
            Some(
                cairn_server::tls::peer_tls(&flags)
                    .map_err(|e| StartError::Config(format!("peer TLS: {e}")))?,
            )
        }
        false => None,
    };
    // Who this member is: as recorded in its data dir at its first start (the flags only
    // matter then, as with etcd); for a member joining an existing cluster, as its peers say
    // (the leader chose its id); for a new cluster's member, from the flags, the same on
    // every member.
    let identity_file = flags.data_dir.join(IDENTITY_FILE);
    let mut peers = BTreeMap::new();
    let mut peer_urls = BTreeMap::new();
    let mut ids = Vec::new();
    let (member_id, cluster_id) = match read_identity(&identity_file)? {
        Some(identity) => identity,
        None if flags.initial_cluster_state == "existing" => {
            let others: Vec<SocketAddr> = cluster
                .iter()
                .filter(|(n, _)| *n != flags.name)
                .filter_map(|(_, urls)| url_addr(&urls[0]).ok())
                .collect();
            let answer = discover(&others, my_urls, peer_tls.as_ref()).await?;
            for (id, urls) in &answer.members {
                if *id != answer.member_id {
                    if let Some(addr) = urls.first().and_then(|u| url_addr(u).ok()) {
                        peers.insert(*id, addr);
                    }
                }
            }
            tracing::info!(member_id = %format!("{:x}", answer.member_id), cluster_id = %format!("{:x}", answer.cluster_id),
                members = answer.members.len(), "joining an existing cluster");
            (answer.member_id, answer.cluster_id)
        }
        None => {
            let member_id = id_of(my_urls);
            for (_, urls) in &cluster {
                let id = id_of(urls);
                ids.push(id);
                peer_urls.insert(id, urls.clone());
                if id != member_id {
                    peers.insert(id, url_addr(&urls[0])?);
                }
            }
            ids.sort_unstable();
            (member_id, cluster_id_of(&ids, &flags.initial_cluster_token))
        }
    };
    write_identity(&identity_file, member_id, cluster_id)?;

    let mut core = cairn_core::Config::new(member_id, ids, 0);
    core.peer_urls = peer_urls;
    core.tick_ms = flags.heartbeat_interval;
    core.election_ticks = (flags.election_timeout / flags.heartbeat_interval) as usize;
    core.snapshot_entries = flags.snapshot_count.max(1);
    core.request_bytes_max = flags.max_request_bytes;
    core.auto_compaction = auto_compaction(flags.auto_compaction_mode, &flags.auto_compaction_retention)?;
    core.quota_bytes = match flags.quota_backend_bytes {
        0 => cairn_core::config::QUOTA_BYTES_DEFAULT,
        n => n,
    };
    if core.quota_bytes > QUOTA_BYTES_WARN {
        // etcd's warning: the store lives in memory, and a member must hold all of it.
        tracing::warn!(
            quota_bytes = core.quota_bytes,
            "--quota-backend-bytes exceeds 8 GiB, the most etcd recommends; every member holds the whole store in memory"
        );
    }
    core.auto_promote_learners_after_ms = flags.auto_promote_learners.then_some(flags.auto_promote_window);
    let listen_peer = url_addr(split_urls(&flags.listen_peer_urls).first().map_or("", |s| s.as_str()))?;
    let (node, loop_task) = cairn_io_tokio::start(MemberConfig {
        peer_tls: peer_tls.clone(),
        core,
        cluster_id,
        data_dir: flags.data_dir.clone(),
        listen_peer,
        peers,
    })
    .await?;
    let info = Arc::new(ServerInfo {
        cluster_id,
        member_id,
        name: flags.name.clone(),
        client_urls: split_urls(&flags.advertise_client_urls),
        etcd_version: ETCD_VERSION.to_string(),
        max_request_bytes: flags.max_request_bytes,
        data_dir: Some(flags.data_dir.clone()),
        auth: cairn_server::credentials::AuthSettings {
            bcrypt_cost: flags.bcrypt_cost,
            token_ttl: std::time::Duration::from_secs(flags.auth_token_ttl),
        },
    });
    // Tell the cluster this member's name and client URLs, through the log (etcd's "publish"),
    // so every member's MemberList shows them. Retried until it commits.
    {
        let node = node.clone();
        let request = cairn_core::Request::PublishMember {
            member: member_id,
            name: flags.name.clone(),
            client_urls: split_urls(&flags.advertise_client_urls),
        };
        tokio::spawn(async move {
            loop {
                match node.request_as_member(request.clone()).await {
                    Ok(_) => break,
                    Err(e) if e.is_fatal() => break,
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
                }
            }
        });
    }
    tracing::info!(name = %flags.name, member_id = %format!("{member_id:x}"), cluster_id = %format!("{cluster_id:x}"),
        data_dir = %flags.data_dir.display(), "cairn member starting");

    let metrics = cairn_server::metrics::ServerMetrics::new(node.clone(), info.clone())
        .map_err(|e| StartError::Config(format!("registering the metrics: {e}")))?;
    let health_route = get({
        let node = node.clone();
        move || health(node.clone())
    });
    let router = grpc::grpc_router(node.clone(), info.clone())
        .merge(cairn_server::gateway::routes(node.clone(), info.clone()))
        .route("/health", health_route.clone())
        .merge(cairn_server::metrics::routes(metrics.clone()))
        .route("/version", get(|| async { Json(serde_version()) }))
        .merge(cairn_server::probes::routes(node.clone()))
        .merge(cairn_server::quota_api::routes(node.clone()))
        .merge(cairn_server::v2::router(node.clone(), info.clone()))
        .fallback(grpc::not_found)
        .layer(axum::middleware::from_fn_with_state(metrics.clone(), cairn_server::metrics::count_grpc))
        .layer(axum::middleware::from_fn(cairn_server::cors::layer));
    let fd_limit = cairn_server::limits::fd_soft_limit();
    let cap = cairn_server::limits::client_connections_max(
        flags.max_client_connections,
        fd_limit,
        cairn_server::limits::fds_open(),
    );
    if let Some(limit) = fd_limit.filter(|&l| l < cairn_server::limits::FD_LIMIT_LOW) {
        tracing::warn!(
            limit,
            client_connections_max = cap,
            "the open-files limit (ulimit -n) is low; raise it to serve more clients"
        );
    }
    let cap = cairn_server::authority::ConnectionCap::new(cap);
    let mut servers = Vec::new();
    let mut tls_flags = cairn_server::tls::TlsFlags {
        cert_file: flags.cert_file.clone(),
        key_file: flags.key_file.clone(),
        trusted_ca_file: flags.trusted_ca_file.clone(),
        client_cert_auth: flags.client_cert_auth,
        cipher_suites: split_urls(&flags.cipher_suites),
        skip_peer_verification: false,
    };
    let https = split_urls(&flags.listen_client_urls).iter().any(|u| u.starts_with("https://"));
    if https && flags.auto_tls && tls_flags.cert_file.is_none() && tls_flags.key_file.is_none() {
        let urls = [&flags.listen_client_urls, &flags.advertise_client_urls];
        let (cert, key) = self_signed(&flags.data_dir, "client", urls, "--auto-tls")?;
        tracing::warn!(cert = %cert.display(), "--auto-tls: serving clients with a self-signed certificate");
        tls_flags.cert_file = Some(cert);
        tls_flags.key_file = Some(key);
    }
    for url in split_urls(&flags.listen_client_urls) {
        let addr = url_addr(&url)?;
        let tls = match url.starts_with("https://") {
            true => {
                let config = cairn_server::tls::server_config(&tls_flags)
                    .map_err(|e| StartError::Config(e.to_string()))?;
                Some(tokio_rustls::TlsAcceptor::from(config))
            }
            false => None,
        };
        let listener = client_listener(addr)
            .map_err(|e| StartError::Config(format!("cannot listen for clients on {addr}: {e}")))?;
        tracing::info!(%addr, tls = tls.is_some(), client_cert_auth = tls.is_some() && flags.client_cert_auth,
            "serving clients (etcd v3 gRPC and JSON gateway, v2 keys API, /health, /version)");
        let listener = cairn_server::authority::ClientListener::new(listener, cap.clone())
            .map_err(|e| StartError::Config(format!("cannot accept clients on {addr}: {e}")))?;
        let router = router.clone();
        // The certificate names the user only with --client-cert-auth (etcd's rule).
        let tls = tls.map(|acceptor| cairn_server::serve::ClientTls {
            acceptor,
            common_name_is_user: flags.client_cert_auth,
        });
        servers.push(tokio::spawn(async move {
            cairn_server::serve::serve(listener, router, tls, shutdown_signal()).await
        }));
    }

    for url in split_urls(&flags.listen_metrics_urls) {
        let addr = url_addr(&url)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| StartError::Config(format!("cannot listen for metrics on {addr}: {e}")))?;
        tracing::info!(%addr, "serving /metrics and /health");
        let router = cairn_server::metrics::routes(metrics.clone()).route("/health", health_route.clone());
        servers.push(tokio::spawn(async move {
            let _ = axum::serve(listener, router).with_graceful_shutdown(shutdown_signal()).await;
        }));
    }

    tokio::select! {
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            for s in servers {
                let _ = s.await;
            }
            Ok(())
        }
        r = loop_task => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StartError::Node(e)),
            Err(e) => Err(StartError::Config(format!("the member loop failed: {e}"))),
        },
    }
}

fn snapshot_command(command: SnapshotCommand) -> Result<(), StartError> {
    use cairn_server::backup;
    let read = |file: &std::path::Path| {
        std::fs::read(file).map_err(|e| StartError::Config(format!("cannot read {}: {e}", file.display())))
    };
    match command {
        SnapshotCommand::Status { file, write_out } => {
            let bytes = read(&file)?;
            let st =
                backup::status(&bytes).map_err(|e| StartError::Config(format!("{}: {e}", file.display())))?;
            let size = human_bytes(st.total_size);
            match write_out {
                WriteOut::Simple => println!("{:x}, {}, {}, {}", st.hash, st.revision, st.total_keys, size),
                WriteOut::Json => println!(
                    "{}",
                    serde_json::json!({"hash": st.hash, "revision": st.revision, "totalKey": st.total_keys, "totalSize": st.total_size})
                ),
                WriteOut::Table => {
                    let cells =
                        [format!("{:x}", st.hash), st.revision.to_string(), st.total_keys.to_string(), size];
                    let heads = ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"];
                    let widths: Vec<usize> =
                        heads.iter().zip(&cells).map(|(h, c)| h.len().max(c.len()) + 2).collect();
                    let rule: String =
                        widths.iter().map(|w| format!("+{}", "-".repeat(*w))).collect::<String>() + "+";
                    let centered: String =
                        heads.iter().zip(&widths).map(|(h, w)| format!("|{h:^w$}")).collect::<String>() + "|";
                    let right: String = cells
                        .iter()
                        .zip(&widths)
                        .map(|(c, w)| format!("|{c:>w$} ", w = w - 1))
                        .collect::<String>()
                        + "|";
                    println!("{rule}\n{centered}\n{rule}\n{right}\n{rule}");
                }
            }
            Ok(())
        }
        SnapshotCommand::Restore {
            file,
            name,
            data_dir,
            initial_cluster,
            initial_advertise_peer_urls,
            initial_cluster_token,
        } => {
            let data_dir = data_dir.unwrap_or_else(|| PathBuf::from(format!("{name}.cairn")));
            if std::fs::read_dir(&data_dir).is_ok_and(|mut d| d.next().is_some()) {
                return Err(StartError::Config(format!(
                    "data-dir {:?} exists",
                    data_dir.display().to_string()
                )));
            }
            let cluster = parse_initial_cluster(&initial_cluster)?;
            let Some((_, my_urls)) = cluster.iter().find(|(n, _)| *n == name) else {
                return Err(StartError::Config(format!("--initial-cluster has no member named {name:?}")));
            };
            let mut advertised = split_urls(&initial_advertise_peer_urls);
            let mut listed = my_urls.clone();
            advertised.sort();
            listed.sort();
            if advertised != listed {
                return Err(StartError::Config(format!(
                    "--initial-advertise-peer-urls {advertised:?} are not {name}'s URLs in --initial-cluster {listed:?}"
                )));
            }
            let members: Vec<cairn_core::Member> = cluster
                .iter()
                .map(|(n, urls)| cairn_core::Member {
                    id: member_id_of(urls, &initial_cluster_token),
                    name: n.clone(),
                    peer_urls: urls.clone(),
                    client_urls: vec![],
                    learner: false,
                })
                .collect();
            let member_id = member_id_of(my_urls, &initial_cluster_token);
            let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
            let cluster_id = cluster_id_of(&ids, &initial_cluster_token);
            let bytes = read(&file)?;
            let (origin, state) =
                backup::parse(&bytes).map_err(|e| StartError::Config(format!("{}: {e}", file.display())))?;
            let first = cairn_core::backup::restore(state, &members)
                .map_err(|e| StartError::Config(format!("{}: {e}", file.display())))?;
            // Made aside and renamed into place: a restore that fails leaves no half-made
            // data dir behind.
            let staging = data_dir.with_extension("restoring");
            let _ = std::fs::remove_dir_all(&staging);
            let made = (|| {
                std::fs::create_dir_all(&staging)?;
                let mut storage = cairn_io_tokio::storage::Storage::open(&staging)
                    .map_err(|e| StartError::Config(e.to_string()))?;
                storage.initialize(&first).map_err(|e| StartError::Config(e.to_string()))?;
                drop(storage);
                write_identity(&staging.join(IDENTITY_FILE), member_id, cluster_id)?;
                if data_dir.exists() {
                    std::fs::remove_dir(&data_dir)?;
                }
                std::fs::rename(&staging, &data_dir)?;
                Ok::<(), StartError>(())
            })();
            if let Err(e) = made {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(e);
            }
            if let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::File::open(parent)?.sync_all()?;
            }
            tracing::info!(
                backup = %file.display(),
                data_dir = %data_dir.display(),
                revision = origin.revision,
                member_id = %format!("{member_id:x}"),
                cluster_id = %format!("{cluster_id:x}"),
                members = members.len(),
                "restored snapshot"
            );
            Ok(())
        }
    }
}

/// A token for `user` (`name:password`) from the v3 gateway's Authenticate.
fn authenticate(agent: &ureq::Agent, endpoint: &str, user: &str) -> Result<String, StartError> {
    let url = format!("{}/v3/auth/authenticate", endpoint.trim_end_matches('/'));
    let (name, password) = user.split_once(':').unwrap_or((user, ""));
    let body = serde_json::json!({ "name": name, "password": password }).to_string();
    let fail = |e: ureq::Error| StartError::Config(format!("{url}: {e}"));
    let text = agent.post(&url).content_type("application/json").send(body.as_str()).map_err(fail)?;
    let text = text.into_body().read_to_string().map_err(fail)?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| StartError::Config(format!("{url}: {e}")))?;
    match v["token"].as_str() {
        Some(token) => Ok(token.to_string()),
        None => Err(StartError::Config(v["error"].as_str().unwrap_or(&text).to_string())),
    }
}

fn quota_command(action: QuotaCommand, endpoint: &str, user: Option<&str>) -> Result<(), StartError> {
    use cairn_server::quota_api::{Quotas, PATH};
    let url = format!("{}{PATH}", endpoint.trim_end_matches('/'));
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let token = user.map(|u| authenticate(&agent, endpoint, u)).transpose()?;
    let auth = token.as_deref().unwrap_or("");
    let fail = |e: ureq::Error| StartError::Config(format!("{url}: {e}"));
    let response = match &action {
        QuotaCommand::List => agent.get(&url).header("Authorization", auth).call().map_err(fail)?,
        QuotaCommand::Set { prefix, bytes, keys } => {
            let body =
                serde_json::json!({ "prefix": prefix, "bytes_max": bytes, "keys_max": keys }).to_string();
            agent
                .put(&url)
                .header("Authorization", auth)
                .content_type("application/json")
                .send(body.as_str())
                .map_err(fail)?
        }
        QuotaCommand::Remove { prefix } => {
            let body = serde_json::json!({ "prefix": prefix }).to_string();
            agent
                .delete(&url)
                .header("Authorization", auth)
                .force_send_body()
                .content_type("application/json")
                .send(body.as_str())
                .map_err(fail)?
        }
    };
    let status = response.status();
    let text = response.into_body().read_to_string().map_err(fail)?;
    if !status.is_success() {
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or(text);
        return Err(StartError::Config(message));
    }
    let quotas: Quotas =
        serde_json::from_str(&text).map_err(|e| StartError::Config(format!("{url}: {e}")))?;
    let bound = |n: u64| if n == 0 { "-".to_string() } else { n.to_string() };
    println!("{:<32} {:>12} {:>12} {:>12} {:>12}", "PREFIX", "KEYS", "KEYS MAX", "BYTES", "BYTES MAX");
    for q in quotas.quotas {
        println!(
            "{:<32} {:>12} {:>12} {:>12} {:>12}",
            q.prefix,
            q.keys,
            bound(q.keys_max),
            q.bytes,
            bound(q.bytes_max)
        );
    }
    Ok(())
}

/// Bytes as etcdctl prints them (go-humanize's SI units: "20 kB", "1.5 MB").
fn human_bytes(n: u64) -> String {
    if n < 10 {
        return format!("{n} B");
    }
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let e = ((n as f64).ln() / 1000f64.ln()).floor() as usize;
    let e = e.min(UNITS.len() - 1);
    let value = ((n as f64) / 1000f64.powi(e as i32) * 10.0 + 0.5).floor() / 10.0;
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[e])
    } else {
        format!("{value:.0} {}", UNITS[e])
    }
}

/// The file in the data dir that records who the member is: `member_id` and `cluster_id`, in
/// hex, one `key=value` per line.
const IDENTITY_FILE: &str = "member";

fn read_identity(path: &std::path::Path) -> Result<Option<(u64, u64)>, StartError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let field = |key: &str| {
        text.lines()
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| k.trim() == key)
            .and_then(|(_, v)| u64::from_str_radix(v.trim(), 16).ok())
    };
    match (field("member_id"), field("cluster_id")) {
        (Some(m), Some(c)) if m != 0 => Ok(Some((m, c))),
        _ => Err(StartError::Config(format!(
            "{} is damaged (it must say member_id=<hex> and cluster_id=<hex>)",
            path.display()
        ))),
    }
}

fn write_identity(path: &std::path::Path, member_id: u64, cluster_id: u64) -> Result<(), StartError> {
    use std::io::Write;
    let text = format!("member_id={member_id:x}\ncluster_id={cluster_id:x}\n");
    if std::fs::read_to_string(path).is_ok_and(|t| t == text) {
        return Ok(());
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Asks the cluster's members who this member is, for up to a minute: the operator may start
/// it just before `member add` has applied.
async fn discover(
    peers: &[SocketAddr],
    my_urls: &[String],
    tls: Option<&cairn_io_tokio::transport::PeerTls>,
) -> Result<cairn_io_tokio::transport::JoinAnswer, StartError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match cairn_io_tokio::transport::discover(peers, my_urls, tls).await {
            Ok(a) => return Ok(a),
            Err(e) if std::time::Instant::now() >= deadline => {
                return Err(StartError::Config(format!(
                    "--initial-cluster-state existing: could not learn this member's id from its peers: {e}"
                )))
            }
            Err(e) => {
                tracing::warn!(error = %e, "asking the cluster who this member is; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}

/// Clients' backlog of connections not yet accepted: etcd's, so a connect flood queues rather
/// than refuses (the kernel caps it at `net.core.somaxconn`).
const CLIENT_BACKLOG: u32 = 4096;

fn client_listener(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket =
        if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(CLIENT_BACKLOG)
}

fn serde_version() -> std::collections::BTreeMap<&'static str, &'static str> {
    // etcd's two fields keep the API level (v2 clients check `etcdcluster`); `cairn` says what
    // answers.
    BTreeMap::from([
        ("etcdserver", ETCD_VERSION),
        ("etcdcluster", "3.4.0"),
        ("cairn", cairn_server::info::CAIRN_VERSION),
    ])
}

/// etcd's /health: healthy when the member knows a leader (etcd answers it as text/plain).
async fn health(node: MemberHandle) -> impl axum::response::IntoResponse {
    let ct = [(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if node.status().leader != 0 {
        (axum::http::StatusCode::OK, ct, "{\"health\":\"true\"}")
    } else {
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, ct, "{\"health\":\"false\"}")
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::config::AutoCompaction;

    #[test]
    fn auto_compaction_flags_read_as_etcd_reads_them() {
        let periodic = |ms| Some(AutoCompaction::Periodic { retention_ms: ms });
        assert_eq!(auto_compaction(CompactionMode::Periodic, "0").ok(), Some(None));
        assert_eq!(auto_compaction(CompactionMode::Periodic, "1").ok(), Some(periodic(3_600_000)));
        assert_eq!(auto_compaction(CompactionMode::Periodic, "30m").ok(), Some(periodic(1_800_000)));
        assert_eq!(auto_compaction(CompactionMode::Periodic, "1h30m").ok(), Some(periodic(5_400_000)));
        assert_eq!(auto_compaction(CompactionMode::Periodic, "1.5s").ok(), Some(periodic(1_500)));
        assert_eq!(
            auto_compaction(CompactionMode::Revision, "1000").ok(),
            Some(Some(AutoCompaction::Revision {
                retain: 1000,
                interval_ms: REVISION_COMPACTION_INTERVAL_MS
            }))
        );
        assert_eq!(auto_compaction(CompactionMode::Revision, "0").ok(), Some(None));
        for bad in ["x", "10q", "-1", ""] {
            assert!(auto_compaction(CompactionMode::Periodic, bad).is_err(), "{bad}");
        }
        for bad in ["1h", "-5", "x"] {
            assert!(auto_compaction(CompactionMode::Revision, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_print_as_etcdctl_prints_them() {
        assert_eq!(human_bytes(5), "5 B");
        assert_eq!(human_bytes(1056), "1.1 kB");
        assert_eq!(human_bytes(20480), "20 kB");
        assert_eq!(human_bytes(2_500_000), "2.5 MB");
    }
}
