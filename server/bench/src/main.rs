//! `cairn-bench`: load for any etcd v3 gRPC endpoint (Cairn or etcd), in the spirit of etcd's
//! `tools/benchmark`. Prints throughput and latency percentiles from an HDR histogram, a
//! progress line while it runs, and optionally a CSV or JSON line for plots; `plot` draws a
//! comparison chart (SVG) from `scripts/bench-compare`'s results.
//!
//! ```text
//! cairn-bench --endpoints 127.0.0.1:2379 --conns 8 --clients 32 --total 20000 put --val-size 256
//! cairn-bench --endpoints 127.0.0.1:2379 --clients 32 --duration 10 --rate 5000 range --key foo
//! cairn-bench --clients 4 --total 5000 watch-latency --watchers 8
//! cairn-bench --clients 32 --total 50000 lease-keepalive
//! cairn-bench plot --input results.csv --output docs/bench.svg
//! ```

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_server::grpc::pb::etcdserverpb::{
    self as pb, kv_client::KvClient, lease_client::LeaseClient, watch_client::WatchClient,
};
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use tonic::transport::Channel;

#[derive(Parser, Debug)]
#[command(name = "cairn-bench", about = "Load an etcd v3 gRPC endpoint and report throughput and latency")]
struct Flags {
    /// Comma-separated host:port list; connections are spread over them.
    #[arg(long, default_value = "127.0.0.1:2379")]
    endpoints: String,
    /// gRPC connections (HTTP/2), shared by the clients.
    #[arg(long, default_value_t = 1)]
    conns: usize,
    /// Concurrent clients, each with one request in flight.
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Requests in all (ignored with `--duration`).
    #[arg(long, default_value_t = 10_000)]
    total: u64,
    /// Run for this many seconds instead of a number of requests.
    #[arg(long)]
    duration: Option<f64>,
    /// Requests per second at most, over all clients (0: as fast as they go).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Print one CSV line (csv,workload,clients,count,seconds,rps,p50,p90,p99,p999,max in ms) too.
    #[arg(long)]
    csv: bool,
    /// Print the result as one JSON object too.
    #[arg(long)]
    json: bool,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
    /// TLS: the CA (PEM) that signed the endpoints' certificates; connect over https.
    #[arg(long)]
    cacert: Option<std::path::PathBuf>,
    /// TLS: the client certificate (PEM) to present, with --key.
    #[arg(long, requires = "key")]
    cert: Option<std::path::PathBuf>,
    #[arg(long, requires = "cert")]
    key: Option<std::path::PathBuf>,
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Subcommand, Debug, Clone)]
enum Workload {
    /// Puts of `--val-size` bytes to keys drawn from `--key-space` (random, or `--sequential`).
    Put {
        #[arg(long, default_value_t = 8)]
        key_size: usize,
        #[arg(long, default_value_t = 256)]
        val_size: usize,
        #[arg(long, default_value_t = 100_000)]
        key_space: u64,
        #[arg(long)]
        sequential: bool,
    },
    /// Ranges over one key (linearizable unless `--serializable`).
    Range {
        #[arg(long, default_value = "foo")]
        key: String,
        #[arg(long)]
        serializable: bool,
    },
    /// Txns that put one key each.
    TxnPut {
        #[arg(long, default_value_t = 256)]
        val_size: usize,
        #[arg(long, default_value_t = 100_000)]
        key_space: u64,
    },
    /// Puts under a prefix that `--watchers` watch streams follow: the latency is from sending
    /// a put to each watcher receiving its event (one sample per watcher per put).
    WatchLatency {
        #[arg(long, default_value_t = 4)]
        watchers: usize,
        #[arg(long, default_value_t = 256)]
        val_size: usize,
    },
    /// Each client holds a lease and sends keep-alives on its stream, one in flight; the
    /// latency is one keep-alive's round trip.
    LeaseKeepalive {
        #[arg(long, default_value_t = 60)]
        ttl: i64,
    },
    /// Draws `scripts/bench-compare`'s results (its CSV) as an SVG chart: per workload,
    /// Cairn's throughput relative to etcd's, and both p99 latencies.
    Plot {
        #[arg(long)]
        input: String,
        #[arg(long)]
        output: String,
    },
}

impl Workload {
    fn name(&self) -> &'static str {
        match self {
            Workload::Put { .. } => "put",
            Workload::Range { serializable: true, .. } => "range-serializable",
            Workload::Range { .. } => "range-linearizable",
            Workload::TxnPut { .. } => "txn-put",
            Workload::WatchLatency { .. } => "watch-latency",
            Workload::LeaseKeepalive { .. } => "lease-keepalive",
            Workload::Plot { .. } => "plot",
        }
    }
}

fn main() {
    let flags = Flags::parse();
    if let Workload::Plot { input, output } = &flags.workload {
        if let Err(e) = plot(input, output) {
            eprintln!("cairn-bench: {e}");
            std::process::exit(1);
        }
        return;
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cairn-bench: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(flags)) {
        eprintln!("cairn-bench: {e}");
        std::process::exit(1);
    }
}

/// splitmix64: key choice needs no cryptographic randomness, only spread.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What every client shares: the request counter, the stop condition, the pacing, results.
struct Shared {
    next: AtomicU64,
    done: AtomicU64,
    errors: AtomicU64,
    total: u64,
    deadline: Option<Instant>,
    started: Instant,
    /// Seconds between two requests over all clients (0: no limit).
    interval: f64,
    hist: Mutex<Histogram<u64>>,
    template: Histogram<u64>,
}

impl Shared {
    /// The next request's number, once its turn has come (`--rate`); None when the run is over.
    async fn ticket(&self) -> Option<u64> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        if self.deadline.is_none() && n >= self.total {
            return None;
        }
        if self.interval > 0.0 {
            let at = self.started + Duration::from_secs_f64(n as f64 * self.interval);
            tokio::time::sleep_until(at.into()).await;
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                return None;
            }
        }
        Some(n)
    }

    fn merge(&self, local: &Histogram<u64>) {
        if let Ok(mut h) = self.hist.lock() {
            let _ = h.add(local);
        }
    }
}

async fn run(flags: Flags) -> Result<(), Error> {
    let endpoints: Vec<String> = flags.endpoints.split(',').map(|e| e.trim().to_string()).collect();
    let tls = match &flags.cacert {
        None => None,
        Some(ca) => {
            let mut tls = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(std::fs::read(ca)?));
            if let (Some(cert), Some(key)) = (&flags.cert, &flags.key) {
                tls = tls.identity(tonic::transport::Identity::from_pem(
                    std::fs::read(cert)?,
                    std::fs::read(key)?,
                ));
            }
            Some(tls)
        }
    };
    let mut channels = Vec::new();
    for i in 0..flags.conns.max(1) {
        let ep = &endpoints[i % endpoints.len()];
        let channel = match &tls {
            None => Channel::from_shared(format!("http://{ep}"))?,
            Some(tls) => Channel::from_shared(format!("https://{ep}"))?.tls_config(tls.clone())?,
        };
        channels.push(channel.connect().await?);
    }
    if let Workload::Range { key, .. } = &flags.workload {
        // Something to read.
        let mut c = KvClient::new(channels[0].clone());
        c.put(pb::PutRequest {
            key: key.clone().into_bytes().into(),
            value: vec![b'x'; 256].into(),
            ..Default::default()
        })
        .await?;
    }
    // Microseconds, 1 us to 60 s, 3 significant digits.
    let template = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let started = Instant::now();
    let shared = Arc::new(Shared {
        next: AtomicU64::new(0),
        done: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        total: flags.total,
        deadline: flags.duration.map(|d| started + Duration::from_secs_f64(d)),
        started,
        interval: if flags.rate > 0 { 1.0 / flags.rate as f64 } else { 0.0 },
        hist: Mutex::new(Histogram::<u64>::new_from(&template)),
        template: template.clone(),
    });
    let running = Arc::new(AtomicBool::new(true));
    let progress = (!flags.quiet).then(|| spawn_progress(shared.clone(), running.clone(), flags.duration));

    match &flags.workload {
        Workload::WatchLatency { watchers, val_size } => {
            watch_latency(&channels, flags.clients, *watchers, *val_size, &shared).await?
        }
        Workload::LeaseKeepalive { ttl } => lease_keepalive(&channels, flags.clients, *ttl, &shared).await?,
        _ => kv_load(&channels, flags.clients, &flags.workload, &shared).await?,
    }
    running.store(false, Ordering::Relaxed);
    if let Some(p) = progress {
        let _ = p.await;
    }
    report(&flags, &shared)
}

/// A progress line on stderr, redrawn every half second while the run lasts.
fn spawn_progress(
    shared: Arc<Shared>,
    running: Arc<AtomicBool>,
    duration: Option<f64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let tty = std::io::stderr().is_terminal();
        while running.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let done = shared.done.load(Ordering::Relaxed);
            let secs = shared.started.elapsed().as_secs_f64();
            let (frac, goal) = match duration {
                Some(d) => ((secs / d).min(1.0), format!("{secs:.0}/{d:.0} s")),
                None => {
                    ((done as f64 / shared.total.max(1) as f64).min(1.0), format!("{done}/{}", shared.total))
                }
            };
            let width = 30;
            let filled = (frac * width as f64) as usize;
            let line = format!(
                "[{}{}] {goal} {:.0} req/s",
                "#".repeat(filled),
                "-".repeat(width - filled),
                done as f64 / secs.max(1e-9)
            );
            let mut err = std::io::stderr();
            let _ = if tty { write!(err, "\r{line}") } else { writeln!(err, "{line}") };
            let _ = err.flush();
        }
        if tty {
            let _ = writeln!(std::io::stderr());
        }
    })
}

async fn kv_load(
    channels: &[Channel],
    clients: usize,
    workload: &Workload,
    shared: &Arc<Shared>,
) -> Result<(), Error> {
    let mut tasks = Vec::new();
    for c in 0..clients.max(1) {
        let mut kv = KvClient::new(channels[c % channels.len()].clone()).max_decoding_message_size(64 << 20);
        let (shared, workload) = (shared.clone(), workload.clone());
        tasks.push(tokio::spawn(async move {
            let mut local = Histogram::<u64>::new_from(&shared.template);
            while let Some(n) = shared.ticket().await {
                let t = Instant::now();
                let ok = match &workload {
                    Workload::Put { key_size, val_size, key_space, sequential } => {
                        let k = if *sequential { n % key_space } else { mix(n) % key_space };
                        let key = format!("{k:0width$}", width = *key_size).into_bytes();
                        let req = pb::PutRequest {
                            key: key.into(),
                            value: vec![b'v'; *val_size].into(),
                            ..Default::default()
                        };
                        kv.put(req).await.is_ok()
                    }
                    Workload::Range { key, serializable } => {
                        let req = pb::RangeRequest {
                            key: key.clone().into_bytes().into(),
                            serializable: *serializable,
                            ..Default::default()
                        };
                        kv.range(req).await.is_ok()
                    }
                    Workload::TxnPut { val_size, key_space } => {
                        let key = format!("{:08}", mix(n) % key_space).into_bytes();
                        let put = pb::PutRequest {
                            key: key.into(),
                            value: vec![b'v'; *val_size].into(),
                            ..Default::default()
                        };
                        let op = pb::RequestOp { request: Some(pb::request_op::Request::RequestPut(put)) };
                        kv.txn(pb::TxnRequest { success: vec![op], ..Default::default() }).await.is_ok()
                    }
                    _ => false,
                };
                if ok {
                    let _ = local.record(t.elapsed().as_micros().max(1) as u64);
                    shared.done.fetch_add(1, Ordering::Relaxed);
                } else {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            shared.merge(&local);
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(())
}

/// Watchers follow the prefix `bench-watch/`; clients put under it and note when each put was
/// sent; each watcher records, per event, the time since its put was sent.
async fn watch_latency(
    channels: &[Channel],
    clients: usize,
    watchers: usize,
    val_size: usize,
    shared: &Arc<Shared>,
) -> Result<(), Error> {
    let prefix = b"bench-watch/".to_vec();
    let mut range_end = prefix.clone();
    if let Some(last) = range_end.last_mut() {
        *last += 1;
    }
    let sent: Arc<Mutex<HashMap<u64, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    let mut watch_tasks = Vec::new();
    for w in 0..watchers.max(1) {
        let mut client = WatchClient::new(channels[w % channels.len()].clone());
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let create = pb::WatchCreateRequest {
            key: prefix.clone().into(),
            range_end: range_end.clone().into(),
            ..Default::default()
        };
        tx.send(pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(create)),
        })
        .await?;
        let mut stream = client.watch(tokio_stream::wrappers::ReceiverStream::new(rx)).await?.into_inner();
        // The first answer says the watch is created: puts start only once all are.
        let _ = stream.message().await?;
        let (shared, sent) = (shared.clone(), sent.clone());
        watch_tasks.push(tokio::spawn(async move {
            let _keep_open = tx;
            let mut local = Histogram::<u64>::new_from(&shared.template);
            while let Ok(Some(resp)) = stream.message().await {
                let now = Instant::now();
                for ev in resp.events {
                    let Some(kv) = ev.kv else { continue };
                    let n = std::str::from_utf8(&kv.key[12..]).ok().and_then(|s| s.parse::<u64>().ok());
                    let at = n.and_then(|n| sent.lock().ok().and_then(|m| m.get(&n).copied()));
                    if let Some(at) = at {
                        let _ = local.record(now.duration_since(at).as_micros().max(1) as u64);
                    }
                }
                // Merged as they come: the watcher is stopped from outside at the end.
                shared.merge(&local);
                local.reset();
                if resp.canceled {
                    break;
                }
            }
        }));
    }
    let mut put_tasks = Vec::new();
    for c in 0..clients.max(1) {
        let mut kv = KvClient::new(channels[c % channels.len()].clone());
        let (shared, sent) = (shared.clone(), sent.clone());
        put_tasks.push(tokio::spawn(async move {
            while let Some(n) = shared.ticket().await {
                let key = format!("bench-watch/{n}").into_bytes();
                if let Ok(mut m) = sent.lock() {
                    m.insert(n, Instant::now());
                }
                let req = pb::PutRequest {
                    key: key.into(),
                    value: vec![b'v'; val_size].into(),
                    ..Default::default()
                };
                if kv.put(req).await.is_ok() {
                    shared.done.fetch_add(1, Ordering::Relaxed);
                } else {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in put_tasks {
        t.await?;
    }
    // Let the last events arrive, then stop the watchers.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for t in watch_tasks {
        t.abort();
        let _ = t.await;
    }
    Ok(())
}

/// Each client grants a lease and keeps it alive, one keep-alive in flight at a time.
async fn lease_keepalive(
    channels: &[Channel],
    clients: usize,
    ttl: i64,
    shared: &Arc<Shared>,
) -> Result<(), Error> {
    let mut tasks = Vec::new();
    for c in 0..clients.max(1) {
        let mut lease = LeaseClient::new(channels[c % channels.len()].clone());
        let id = lease.lease_grant(pb::LeaseGrantRequest { ttl, id: 0 }).await?.into_inner().id;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        // A first keep-alive (not counted) before waiting for the stream to open: a gRPC server
        // may send its response headers only with its first answer (etcd's does).
        tx.send(pb::LeaseKeepAliveRequest { id }).await?;
        let mut stream =
            lease.lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx)).await?.into_inner();
        let _ = stream.message().await?;
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let mut local = Histogram::<u64>::new_from(&shared.template);
            while shared.ticket().await.is_some() {
                let t = Instant::now();
                let ok = tx.send(pb::LeaseKeepAliveRequest { id }).await.is_ok()
                    && matches!(stream.message().await, Ok(Some(r)) if r.ttl > 0);
                if ok {
                    let _ = local.record(t.elapsed().as_micros().max(1) as u64);
                    shared.done.fetch_add(1, Ordering::Relaxed);
                } else {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            shared.merge(&local);
            drop(tx);
            let _ = lease.lease_revoke(pb::LeaseRevokeRequest { id }).await;
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(())
}

fn report(flags: &Flags, shared: &Shared) -> Result<(), Error> {
    let secs = shared.started.elapsed().as_secs_f64();
    let h = shared.hist.lock().map_err(|_| "histogram lock poisoned")?;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let name = flags.workload.name();
    let done = shared.done.load(Ordering::Relaxed);
    let rps = done as f64 / secs;
    let errors = shared.errors.load(Ordering::Relaxed);
    // p50, p90, p99, p99.9 and max, in ms: the same figures for every output format.
    let [p50, p90, p99, p999, max] = [ms(0.5), ms(0.9), ms(0.99), ms(0.999), h.max() as f64 / 1000.0];
    let (samples, clients) = (h.len(), flags.clients);
    println!(
        "{name}: {done} ok, {errors} errors in {secs:.2} s = {rps:.0} req/s; latency ms ({samples} samples) p50 {p50:.3} p90 {p90:.3} p99 {p99:.3} p99.9 {p999:.3} max {max:.3}"
    );
    if flags.csv {
        println!(
            "csv,{name},{clients},{done},{secs:.3},{rps:.0},{p50:.3},{p90:.3},{p99:.3},{p999:.3},{max:.3}"
        );
    }
    if flags.json {
        println!(
            "{{\"workload\":\"{name}\",\"clients\":{clients},\"ok\":{done},\"errors\":{errors},\"seconds\":{secs:.3},\"rps\":{rps:.0},\"samples\":{samples},\"p50_ms\":{p50:.3},\"p90_ms\":{p90:.3},\"p99_ms\":{p99:.3},\"p999_ms\":{p999:.3},\"max_ms\":{max:.3}}}"
        );
    }
    Ok(())
}

/// One comparison row: workload label, etcd's and Cairn's req/s and p99 (ms).
struct Row {
    label: String,
    etcd_rps: f64,
    cairn_rps: f64,
    etcd_p99: f64,
    cairn_p99: f64,
}

/// Reads `system,label,csv-fields...` lines (as `scripts/bench-compare` writes them; with
/// repeated runs, the median of each system's runs) and draws an SVG: per workload, bars for
/// Cairn's throughput relative to etcd's (1.0 = same; the target line at 2.0), and p99
/// latencies side by side.
fn plot(input: &str, output: &str) -> Result<(), Error> {
    let text = std::fs::read_to_string(input)?;
    // Per workload label, in order of appearance: each run's (system, req/s, p99 ms).
    type Runs = Vec<(String, Vec<(String, f64, f64)>)>;
    let mut runs: Runs = vec![];
    for line in text.lines() {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < 12 {
            continue;
        }
        let (sys, label) = (f[0], f[1]);
        let (rps, p99): (f64, f64) = (f[6].parse()?, f[9].parse()?);
        let key = label.to_string();
        match runs.iter_mut().find(|(l, _)| *l == key) {
            Some((_, v)) => v.push((sys.to_string(), rps, p99)),
            None => runs.push((key, vec![(sys.to_string(), rps, p99)])),
        }
    }
    let median = |mut xs: Vec<f64>| -> f64 {
        xs.sort_by(|a, b| a.total_cmp(b));
        if xs.is_empty() {
            0.0
        } else {
            xs[xs.len() / 2]
        }
    };
    let rows: Vec<Row> = runs
        .into_iter()
        .map(|(label, v)| {
            let pick = |sys: &str, f: fn(&(String, f64, f64)) -> f64| {
                median(v.iter().filter(|r| r.0 == sys).map(f).collect())
            };
            Row {
                label,
                etcd_rps: pick("etcd", |r| r.1),
                cairn_rps: pick("cairn", |r| r.1),
                etcd_p99: pick("etcd", |r| r.2),
                cairn_p99: pick("cairn", |r| r.2),
            }
        })
        .collect();
    std::fs::write(output, svg(&rows))?;
    Ok(())
}

fn svg(rows: &[Row]) -> String {
    let (w, h, left, top, bottom) = (900.0, 420.0, 60.0, 50.0, 70.0);
    let half = (w - left - 40.0) / 2.0;
    let plot_h = h - top - bottom;
    let n = rows.len().max(1) as f64;
    let ratio_max = rows
        .iter()
        .map(|r| if r.etcd_rps > 0.0 { r.cairn_rps / r.etcd_rps } else { 0.0 })
        .fold(2.5_f64, f64::max)
        .ceil();
    let p99_max = rows.iter().map(|r| r.etcd_p99.max(r.cairn_p99)).fold(1.0_f64, f64::max) * 1.1;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    s += &format!("<text x=\"{left}\" y=\"20\" font-size=\"15\">Cairn vs etcd 3.4, 3 members on one machine (medians)</text>\n");
    // Left: throughput ratio.
    s += &format!("<text x=\"{left}\" y=\"40\">throughput, Cairn / etcd</text>\n");
    let y_of = |v: f64| top + plot_h - v / ratio_max * plot_h;
    for t in 0..=(ratio_max as u64) {
        let y = y_of(t as f64);
        s += &format!("<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{t}x</text>\n", left + half - 20.0, left - 5.0, y + 4.0);
    }
    let y2 = y_of(2.0);
    s += &format!("<line x1=\"{left}\" y1=\"{y2:.1}\" x2=\"{:.1}\" y2=\"{y2:.1}\" stroke=\"#c00\" stroke-dasharray=\"4 3\"/><text x=\"{:.1}\" y=\"{:.1}\" fill=\"#c00\">target 2x</text>\n", left + half - 20.0, left + half - 70.0, y2 - 4.0);
    let slot = (half - 20.0) / n;
    for (i, r) in rows.iter().enumerate() {
        let ratio = if r.etcd_rps > 0.0 { r.cairn_rps / r.etcd_rps } else { 0.0 };
        let x = left + slot * i as f64 + slot * 0.2;
        let y = y_of(ratio);
        s += &format!("<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#2a7\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{ratio:.2}x</text>\n", slot * 0.6, top + plot_h - y, x + slot * 0.3, y - 4.0);
        s += &format!("<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" transform=\"rotate(-30 {:.1} {:.1})\">{}</text>\n", x + slot * 0.3, top + plot_h + 15.0, x + slot * 0.3, top + plot_h + 15.0, r.label);
    }
    // Right: p99 latency, etcd and Cairn.
    let base = left + half + 20.0;
    s += &format!("<text x=\"{base}\" y=\"40\">p99 latency, ms (grey etcd, green Cairn)</text>\n");
    let yl = |v: f64| top + plot_h - v / p99_max * plot_h;
    for k in 0..=4 {
        let v = p99_max * k as f64 / 4.0;
        let y = yl(v);
        s += &format!("<line x1=\"{base}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{v:.1}</text>\n", base + half - 20.0, base - 5.0, y + 4.0);
    }
    for (i, r) in rows.iter().enumerate() {
        let x = base + slot * i as f64 + slot * 0.15;
        for (j, (v, color)) in [(r.etcd_p99, "#999"), (r.cairn_p99, "#2a7")].iter().enumerate() {
            let y = yl(*v);
            s += &format!(
                "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\"/>\n",
                x + j as f64 * slot * 0.35,
                slot * 0.33,
                top + plot_h - y
            );
        }
        s += &format!("<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" transform=\"rotate(-30 {:.1} {:.1})\">{}</text>\n", x + slot * 0.35, top + plot_h + 15.0, x + slot * 0.35, top + plot_h + 15.0, r.label);
    }
    s += "</svg>\n";
    s
}
