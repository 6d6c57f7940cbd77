//! `cairn-bench`: load for any etcd v3 gRPC endpoint (Cairn or etcd), in the spirit of etcd's
//! `tools/benchmark`. Prints throughput and latency percentiles from an HDR histogram.
//!
//! ```text
//! cairn-bench --endpoints 127.0.0.1:2379 --conns 8 --clients 32 --total 20000 put --val-size 256
//! cairn-bench --endpoints 127.0.0.1:2379 --clients 32 --total 20000 range --key foo
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cairn_server::grpc::pb::etcdserverpb::{self as pb, kv_client::KvClient};
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
    /// Requests in all.
    #[arg(long, default_value_t = 10_000)]
    total: u64,
    /// Print one CSV line (workload,clients,total,seconds,rps,p50,p90,p99,p999,max in ms) too.
    #[arg(long)]
    csv: bool,
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
}

fn main() {
    let flags = Flags::parse();
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

async fn run(flags: Flags) -> Result<(), Box<dyn std::error::Error>> {
    let endpoints: Vec<String> = flags.endpoints.split(',').map(|e| e.trim().to_string()).collect();
    let mut channels = Vec::new();
    for i in 0..flags.conns.max(1) {
        let ep = &endpoints[i % endpoints.len()];
        channels.push(Channel::from_shared(format!("http://{ep}"))?.connect().await?);
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
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    // Microseconds, 1 us to 60 s, 3 significant digits.
    let template = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new_from(&template)));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..flags.clients.max(1) {
        let mut kv = KvClient::new(channels[c % channels.len()].clone()).max_decoding_message_size(64 << 20);
        let (next, errors, hist, workload, total, template) = (
            next.clone(),
            errors.clone(),
            hist.clone(),
            flags.workload.clone(),
            flags.total,
            template.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut local = Histogram::<u64>::new_from(&template);
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    break;
                }
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
                };
                if ok {
                    let _ = local.record(t.elapsed().as_micros().max(1) as u64);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            if let Ok(mut h) = hist.lock() {
                let _ = h.add(&local);
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let secs = started.elapsed().as_secs_f64();
    let h = hist.lock().map_err(|_| "histogram lock poisoned")?;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let name = match &flags.workload {
        Workload::Put { .. } => "put",
        Workload::Range { serializable: true, .. } => "range-serializable",
        Workload::Range { .. } => "range-linearizable",
        Workload::TxnPut { .. } => "txn-put",
    };
    let rps = h.len() as f64 / secs;
    println!(
        "{name}: {} ok, {} errors in {secs:.2} s = {rps:.0} req/s; latency ms p50 {:.3} p90 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}",
        h.len(),
        errors.load(Ordering::Relaxed),
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
        h.max() as f64 / 1000.0
    );
    if flags.csv {
        println!(
            "csv,{name},{},{},{secs:.3},{rps:.0},{:.3},{:.3},{:.3},{:.3},{:.3}",
            flags.clients,
            h.len(),
            ms(0.5),
            ms(0.9),
            ms(0.99),
            ms(0.999),
            h.max() as f64 / 1000.0
        );
    }
    Ok(())
}
