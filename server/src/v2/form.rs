//! Request parameters as Go's `net/http` parses them for etcd: form body values first, then the
//! query string's, each `key=value` unescaped by `url.QueryUnescape`, with Go's errors for bad
//! escapes and semicolons (they become etcd's error 210).

/// Parameters in Go's order: for a key, body values come before query values.
#[derive(Debug, Default)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    /// Parses `body` (when `form_body`: a PUT/POST/PATCH with an urlencoded content type) and
    /// then `query`. Like Go's `ParseForm`, parses everything it can and returns the first error
    /// alongside.
    pub fn parse(body: Option<&[u8]>, query: &str) -> (Form, Option<String>) {
        let mut form = Form::default();
        let mut first_err = None;
        if let Some(body) = body {
            let body = String::from_utf8_lossy(body);
            if let Err(e) = parse_query(&body, &mut form.pairs) {
                first_err.get_or_insert(e);
            }
        }
        if let Err(e) = parse_query(query, &mut form.pairs) {
            first_err.get_or_insert(e);
        }
        (form, first_err)
    }

    /// The first value of `key` (Go's `FormValue`: "" when absent).
    pub fn value(&self, key: &str) -> &str {
        self.get(key).unwrap_or("")
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Go's `strconv.ParseBool` of the first value, if present.
    pub fn bool(&self, key: &str) -> Result<bool, Invalid> {
        match self.get(key) {
            None => Ok(false),
            Some(v) => parse_bool(v),
        }
    }

    /// Go's `strconv.ParseUint(v, 10, 64)` of the first value, if present (0 when absent).
    pub fn u64(&self, key: &str) -> Result<u64, Invalid> {
        match self.get(key) {
            None => Ok(0),
            Some(v) => parse_u64(v),
        }
    }
}

/// A parameter value that is not what its name asks for.
#[derive(Debug, PartialEq, Eq)]
pub struct Invalid;

pub fn parse_bool(v: &str) -> Result<bool, Invalid> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(Invalid),
    }
}

pub fn parse_u64(v: &str) -> Result<u64, Invalid> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Invalid);
    }
    v.parse().map_err(|_| Invalid)
}

/// Go's `url.parseQuery`.
fn parse_query(query: &str, out: &mut Vec<(String, String)>) -> Result<(), String> {
    let mut err: Option<String> = None;
    for part in query.split('&') {
        if part.contains(';') {
            err = Some("invalid semicolon separator in query".into());
            continue;
        }
        if part.is_empty() {
            continue;
        }
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let k = match unescape(k, true) {
            Ok(k) => k,
            Err(e) => {
                err.get_or_insert(e);
                continue;
            }
        };
        let v = match unescape(v, true) {
            Ok(v) => v,
            Err(e) => {
                err.get_or_insert(e);
                continue;
            }
        };
        out.push((k, v));
    }
    err.map_or(Ok(()), Err)
}

/// Go's `url.QueryUnescape` (`plus`: '+' means space) or `PathUnescape`; the error is Go's
/// message. Invalid UTF-8 in the result is replaced, as Go's JSON encoder would.
pub fn unescape(s: &str, plus: bool) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                    }
                    _ => {
                        let bad: String = s[i..].chars().take(3).collect();
                        return Err(format!("invalid URL escape {}", go_quote(&bad)));
                    }
                }
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Go's `strconv.Quote` for the printable ASCII an escape error shows.
fn go_quote(s: &str) -> String {
    let mut q = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            c if c.is_ascii_graphic() || c == ' ' => q.push(c),
            c => q.push_str(&c.escape_unicode().to_string()),
        }
    }
    q.push('"');
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_values_come_before_query_values() {
        let (f, e) = Form::parse(Some(b"value=body&ttl=5"), "value=query&x=1");
        assert!(e.is_none());
        assert_eq!(f.value("value"), "body");
        assert_eq!(f.value("ttl"), "5");
        assert_eq!(f.value("x"), "1");
        assert_eq!(f.value("missing"), "");
    }

    #[test]
    fn unescapes_like_go() {
        assert_eq!(unescape("a+b%20c", true).as_deref(), Ok("a b c"));
        assert_eq!(unescape("a+b", false).as_deref(), Ok("a+b"));
        assert_eq!(unescape("%zz", true), Err("invalid URL escape \"%zz\"".into()));
        assert_eq!(unescape("ab%4", true), Err("invalid URL escape \"%4\"".into()));
        assert_eq!(unescape("%", true), Err("invalid URL escape \"%\"".into()));
    }

    #[test]
    fn parse_errors_keep_the_rest() {
        let (f, e) = Form::parse(None, "a=%zz&b=2");
        assert_eq!(e.as_deref(), Some("invalid URL escape \"%zz\""));
        assert_eq!(f.value("b"), "2");
        let (_, e) = Form::parse(None, "a=1;b=2");
        assert_eq!(e.as_deref(), Some("invalid semicolon separator in query"));
    }

    #[test]
    fn go_bools_and_uints() {
        assert_eq!(parse_bool("True"), Ok(true));
        assert_eq!(parse_bool("0"), Ok(false));
        assert!(parse_bool("yes").is_err());
        assert!(parse_bool("").is_err());
        assert_eq!(parse_u64("42"), Ok(42));
        assert!(parse_u64("-1").is_err());
        assert!(parse_u64("+1").is_err());
        assert!(parse_u64("18446744073709551616").is_err());
    }
}
