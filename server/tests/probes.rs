//! `/livez`, `/readyz` (etcd 3.5.11+'s probes) and the log flags, on a live 3-member cluster.

#[path = "support/ports.rs"]
mod ports;
mod support;

use std::time::{Duration, Instant};

use support::Cluster;

fn curl(url: &str) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "-m", "10", "-w", "\n%{http_code}", url])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').expect("a status line");
    (status.trim().parse().expect("a status"), body.to_string())
}

#[test]
fn probes_say_live_and_ready_and_not_ready_without_a_quorum() {
    let json = vec!["--log-format".to_string(), "json".to_string()];
    let mut c = Cluster::start_with(&[json, vec![], vec![]]);
    let urls: Vec<String> = (0..3).map(|i| format!("http://{}", c.endpoint(i))).collect();
    let base = |i: usize| urls[i].clone();
    for i in 0..3 {
        assert_eq!(curl(&format!("{}/livez", base(i))), (200, "ok".to_string()));
        assert_eq!(curl(&format!("{}/readyz", base(i))), (200, "ok".to_string()));
    }
    let (status, body) = curl(&format!("{}/readyz?verbose", base(0)));
    assert_eq!(status, 200);
    assert_eq!(
        body,
        "[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\nreadyz check passed\n"
    );

    // Two of three gone: the survivor is alive but not ready (no quorum for a linearizable read).
    c.kill(1);
    c.kill(2);
    let deadline = Instant::now() + Duration::from_secs(20);
    let (status, body) = loop {
        let answer = curl(&format!("{}/readyz", base(0)));
        if answer.0 != 200 || Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("[+]serializable_read ok\n[-]linearizable_read failed: "), "{body}");
    assert!(body.ends_with("readyz check failed\n"), "{body}");
    assert_eq!(curl(&format!("{}/livez", base(0))), (200, "ok".to_string()));
    let (status, _) = curl(&format!("{}/readyz?exclude=linearizable_read", base(0)));
    assert_eq!(status, 200);

    // --log-format json: every line one JSON object; the text logs carry no colour codes (the
    // log is a file, not a terminal).
    let log = c.log(0);
    assert!(log.lines().count() > 3);
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{line}");
    }
    assert!(!c.log(1).contains('\u{1b}'), "no ANSI colour codes in a log file");
}
