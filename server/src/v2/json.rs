//! etcd's v2 JSON: events, nodes and errors, encoded as Go's `encoding/json` encodes them
//! (field order, omitted zero fields, `<>&` escaped, a trailing newline).

use cairn_core::v2::{V2Event, V2Node};
use serde::Serialize;

#[derive(Serialize)]
struct EventJson<'a> {
    action: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<NodeJson<'a>>,
    #[serde(rename = "prevNode", skip_serializing_if = "Option::is_none")]
    prev_node: Option<NodeJson<'a>>,
}

#[derive(Serialize)]
struct NodeJson<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    #[serde(skip_serializing_if = "is_false")]
    dir: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiration: Option<String>,
    #[serde(skip_serializing_if = "is_zero_i64")]
    ttl: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    nodes: Vec<NodeJson<'a>>,
    #[serde(rename = "modifiedIndex", skip_serializing_if = "is_zero_u64")]
    modified_index: u64,
    #[serde(rename = "createdIndex", skip_serializing_if = "is_zero_u64")]
    created_index: u64,
}

#[derive(Serialize)]
struct ErrorJson<'a> {
    #[serde(rename = "errorCode")]
    error_code: u32,
    message: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    cause: &'a str,
    index: u64,
}

fn is_false(b: &bool) -> bool {
    !*b
}
fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}
fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

fn node_json(n: &V2Node, now_ns: i64) -> NodeJson<'_> {
    NodeJson {
        // The root's key is empty in etcd's answers (its internal name is trimmed away).
        key: if n.key == "/" { "" } else { &n.key },
        value: n.value.as_deref(),
        dir: n.dir,
        expiration: n.expiration_ns.map(rfc3339_nano),
        // A node past its expiry but not yet removed shows no TTL rather than a negative one.
        ttl: n.expiration_ns.map_or(0, |t| ttl_secs(t, now_ns).max(0)),
        nodes: n.nodes.iter().map(|c| node_json(c, now_ns)).collect(),
        modified_index: n.modified_index,
        created_index: n.created_index,
    }
}

/// Seconds left, rounded up (etcd: 1..n, not 1..n+1).
pub fn ttl_secs(expire_ns: i64, now_ns: i64) -> i64 {
    let left = expire_ns.saturating_sub(now_ns);
    let mut secs = left / 1_000_000_000;
    if left % 1_000_000_000 > 0 {
        secs += 1;
    }
    secs
}

/// An event as etcd writes it; `no_value` drops the nodes (etcd's `noValueOnSuccess`).
pub fn event(e: &V2Event, now_ns: i64, no_value: bool) -> Vec<u8> {
    let j = EventJson {
        action: e.action.as_str(),
        node: (!no_value).then(|| node_json(&e.node, now_ns)),
        prev_node: if no_value { None } else { e.prev_node.as_ref().map(|p| node_json(p, now_ns)) },
    };
    encode(&j)
}

pub fn error(code: u32, message: &str, cause: &str, index: u64) -> Vec<u8> {
    encode(&ErrorJson { error_code: code, message, cause, index })
}

/// JSON as Go encodes it: HTML-sensitive characters escaped, and a newline after.
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    let s = serde_json::to_string(v).unwrap_or_else(|_| "{}".to_string());
    let mut out = String::with_capacity(s.len() + 1);
    for c in s.chars() {
        // These only occur inside JSON strings, where the escapes mean the same.
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('\n');
    out.into_bytes()
}

/// Go's `time.RFC3339Nano` in UTC: fractional seconds without trailing zeros.
pub fn rfc3339_nano(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let frac = if nanos == 0 {
        String::new()
    } else {
        let f = format!(".{nanos:09}");
        f.trim_end_matches('0').to_string()
    };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{frac}Z", sod / 3600, sod % 3600 / 60, sod % 60)
}

/// Go's `time.Duration.String` for durations of a second or more ("1h2m3.5s"); shorter ones
/// in milliseconds.
pub fn go_duration(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    if secs == 0 {
        let ms = format!("{:.6}", d.as_secs_f64() * 1000.0);
        return format!("{}ms", ms.trim_end_matches('0').trim_end_matches('.'));
    }
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let frac =
        if nanos == 0 { String::new() } else { format!(".{nanos:09}").trim_end_matches('0').to_string() };
    match (h, m) {
        (0, 0) => format!("{s}{frac}s"),
        (0, m) => format!("{m}m{s}{frac}s"),
        (h, m) => format!("{h}h{m}m{s}{frac}s"),
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_like_go() {
        assert_eq!(rfc3339_nano(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_nano(1_500_000_000), "1970-01-01T00:00:01.5Z");
        // 2026-11-21T07:20:05.000123Z
        assert_eq!(rfc3339_nano(1_795_245_605_000_123_000), "2026-11-21T07:20:05.000123Z");
        assert_eq!(rfc3339_nano(951_782_400_000_000_000), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn durations_format_like_go() {
        use std::time::Duration;
        assert_eq!(go_duration(Duration::from_millis(320_500)), "5m20.5s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_secs(7)), "7s");
        assert_eq!(go_duration(Duration::from_micros(1500)), "1.5ms");
    }

    #[test]
    fn ttl_rounds_up() {
        assert_eq!(ttl_secs(10_000_000_000, 0), 10);
        assert_eq!(ttl_secs(10_000_000_001, 0), 11);
        assert_eq!(ttl_secs(9_999_999_999, 0), 10);
        assert_eq!(ttl_secs(0, 500_000_000), 0);
    }

    #[test]
    fn json_escapes_like_go() {
        let out = error(100, "Key not found", "/a<b>&c", 7);
        assert_eq!(
            String::from_utf8(out).unwrap_or_default(),
            "{\"errorCode\":100,\"message\":\"Key not found\",\"cause\":\"/a\\u003cb\\u003e\\u0026c\",\"index\":7}\n"
        );
    }
}
