"""What the comparison forgives, and nothing else.

Each cluster's answers are rewritten so that values which legitimately differ between two
clusters (or between two runs of one) become tokens; what remains must be equal. Every rule
names the value it forgives and why:

- ports and the scratch directory: picked at run time.
- cluster and member ids: derived from the peer URLs (etcd hashes them with SHA-1, Cairn with
  FNV-64), so they differ even for equal URLs. Every member id becomes <member-id>; the member's
  name stands beside it wherever it matters.
- lease ids: the server's choice. Replaced by <lease-N>, N counting distinct leases in order of
  first appearance in the session, so "the same lease" is still checked.
- HashKV hashes: Cairn's keyspace hash is not etcd's (different storage, by design). Replaced by
  <hash-N> per distinct value, so "all members agree" is still checked.
- raft term and index, database sizes, versions: bookkeeping of each implementation (etcd's
  elections and its own log entries, bbolt's pages against Cairn's files, 3.4.x against
  3.4.0+cairn.X).
- durations, timestamps, uptimes, and the Date header.
- time to live left on a lease, when within 2 s of the TTL granted (the time between grant and
  question varies); a v2 node's ttl, which v2-ttl checks on its own.
- v2 indexes (modifiedIndex, createdIndex, an error's index, X-Etcd-Index, POST-created key
  names, the index in a failed prevIndex compare): relative to the index before the session's
  first v2 write, because etcd's v2 store also counts its own membership records under /0,
  which Cairn does not keep. Index 0 (an error raised before the store is read) stays 0. The
  number of digits of an index changes a v2 answer's Content-Length, so that is forgiven too
  (the body itself is compared wherever the command prints it).
- HTTP header names are case-insensitive and their order carries no meaning: lower-cased and
  sorted.
- ASCII tables: padding follows the width of the widest cell, so runs of spaces and dashes
  are collapsed after the cells are normalized.
- lines of a command marked unordered in the session (-u): sorted.

Revisions are not normalized: both clusters see the same writes in the same order.
"""

import json
import re

STDERR_DROP = re.compile(r'^\{"level":"warn".*$\n?', re.M)
VERSION = re.compile(r"\b3\.4\.\d+(?:\+cairn[0-9A-Za-z.+-]*)?")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?")
UNIX_TIME = re.compile(r'"ts":\d+(?:\.\d+)?')
JSON_COUNTERS = re.compile(
    r'("(?:raft_term|raftTerm|raftIndex|raftAppliedIndex|dbSize|dbSizeInUse|recvAppendRequestCnt|'
    r'sendAppendRequestCnt|recvPkgRate|sendPkgRate|recvBandwidthRate|sendBandwidthRate)":"?)'
    r"[0-9.e+-]+"
)
FIELDS_COUNTERS = re.compile(r'("(?:RaftTerm|RaftIndex|RaftAppliedIndex|DBSize)" : )\d+')
DURATIONS = [
    (re.compile(r"took = [0-9.]+[a-zµ]*s"), "took = <duration>"),
    (re.compile(r'"(took|uptime)":"[^"]*"'), r'"\1":"<duration>"'),
    (re.compile(r'"took":[0-9.e+-]+'), '"took":<duration>'),
    # A snapshot's size is the store's own encoding (etcd's bolt file, Cairn's backup).
    (re.compile(r'"size":"[0-9.]+ [kMGT]?B"'), '"size":"<db-size>"'),
]
TABLE_TOKENS = {
    "DB SIZE": "<db-size>",
    "RAFT TERM": "<raft-term>",
    "RAFT INDEX": "<raft-index>",
    "RAFT APPLIED INDEX": "<raft-index>",
    "TOOK": "<duration>",
    "TOTAL SIZE": "<db-size>",
}
HTTP_STATUS = re.compile(r"^HTTP/[0-9.]+ \d{3}")
V2_INDEX = re.compile(r'("(?:modifiedIndex|createdIndex|index)":)(\d+)')
V2_HEADER_INDEX = re.compile(r"^(x-etcd-index: )(\d+)$", re.M)
V2_QUEUE_KEY = re.compile(r"/(\d{20})\b")
V2_CAUSE_INDEX = re.compile(r'("cause":"\[\d+ != )(\d+)\]')


class Run:
    """One cluster's session: its facts and the tokens found across all its answers."""

    def __init__(self, run_dir, answers):
        self.dir = run_dir
        with open(f"{run_dir}/dir") as f:
            self.work = f.read().strip()
        self.ports = {}
        with open(f"{run_dir}/ports") as f:
            for line in f:
                name, port = line.split()
                self.ports[port] = f"<{name}>"
        try:
            with open(f"{run_dir}/v2base") as f:
                self.v2base = int(f.read().strip())
        except (OSError, ValueError):
            self.v2base = None
        with open(f"{run_dir}/members.json") as f:
            members = json.load(f)
        self.ids = {}
        self._name(members["header"]["cluster_id"], "<cluster-id>")
        for m in members["members"]:
            self._name(m["ID"], "<member-id>")
        self.hashes = {}
        self.leases = 0
        for cmd, out, err in answers:
            self._discover(cmd, out + "\n" + err)
        ids = sorted(self.ids, key=len, reverse=True)
        self.ids_re = re.compile(r"(?<![0-9A-Za-z])(" + "|".join(map(re.escape, ids)) + r")(?![0-9A-Za-z])")

    def _name(self, value, token):
        value = int(value)
        if value == 0:
            return
        for form in (str(value), f"{value:x}", f"{value:016x}"):
            self.ids.setdefault(form, token)

    def _lease(self, value):
        value = int(value)
        if value and str(value) not in self.ids:
            self.leases += 1
            self._name(value, f"<lease-{self.leases}>")

    def _discover(self, cmd, text):
        """Finds the member ids the session creates, and every lease id, in order."""
        for m in re.finditer(r"Member\s+([0-9a-f]+) (?:added|updated|removed)", text):
            self._name(int(m.group(1), 16), "<new-member-id>")
        for m in re.finditer(r'"member":\{"ID":"?(\d+)', text):
            self._name(m.group(1), "<new-member-id>")
        found = []
        for m in re.finditer(r"lease ([0-9a-f]{16})\b", text):
            found.append((m.start(), int(m.group(1), 16)))
        for m in re.finditer(r'"(?:lease|Lease)"\s?:\s?"?(\d+)', text):
            found.append((m.start(), int(m.group(1))))
        if "lease" in cmd:
            for m in re.finditer(r'"(?:ID|id)":"?(\d+)', text):
                found.append((m.start(), int(m.group(1))))
            for m in re.finditer(r"^([0-9a-f]{16})$", text, re.M):
                found.append((m.start(), int(m.group(1), 16)))
        if "etcdctl lock" in cmd or "etcdctl elect" in cmd:
            for m in re.finditer(r"\b[A-Za-z][\w.-]*/([0-9a-f]{6,16})\b", text):
                found.append((m.start(), int(m.group(1), 16)))
        for _, value in sorted(found):
            self._lease(value)

    def hash_token(self, value):
        return self.hashes.setdefault(value, f"<hash-{len(self.hashes) + 1}>")

    def normalize(self, cmd, text, unordered=False, stderr=False):
        text = text.replace("\r", "")
        if stderr:
            text = STDERR_DROP.sub("", text)
        text = text.replace(self.work, "<dir>")
        text = normalize_headers(text)
        text = TIMESTAMP.sub("<time>", text)
        text = UNIX_TIME.sub('"ts":<time>', text)
        for pattern, token in DURATIONS:
            text = pattern.sub(token, text)
        text = JSON_COUNTERS.sub(r"\1<n>", text)
        text = FIELDS_COUNTERS.sub(r"\1<n>", text)
        text = re.sub(r"^(x-raft-(?:index|term): )\d+$", r"\1<n>", text, flags=re.M)
        if "hashkv" in cmd or "snapshot status" in cmd:
            text = re.sub(r'("hash":)(\d+)', lambda m: m.group(1) + self.hash_token(m.group(2)), text)
            text = re.sub(r"^(\S+, )(\d+)$", lambda m: m.group(1) + self.hash_token(m.group(2)), text, flags=re.M)
        text = re.sub(
            r"TTL\((\d+)s\), remaining\((\d+)s\)",
            lambda m: f"TTL({m.group(1)}s), remaining({ttl_left(m.group(2), m.group(1))}s)",
            text,
        )
        text = re.sub(
            r'"ttl":(\d+),"granted-ttl":(\d+)',
            lambda m: f'"ttl":{ttl_left(m.group(1), m.group(2))},"granted-ttl":{m.group(2)}',
            text,
        )
        if "/v2/" in cmd:
            text = re.sub(r'"ttl":\d+', '"ttl":<ttl>', text)
        if "endpoint status" in cmd:
            text = normalize_status_lines(text)
        text = normalize_tables(text, self)
        if "/v2/" in cmd and self.v2base is not None:
            rel = lambda n: f"<v2+{int(n) - self.v2base}>" if int(n) else n
            text = V2_INDEX.sub(lambda m: m.group(1) + rel(m.group(2)), text)
            if "prevIndex" in cmd:
                text = V2_CAUSE_INDEX.sub(lambda m: m.group(1) + rel(m.group(2)) + "]", text)
            text = re.sub(r"^(content-length: )\d+$", r"\1<n>", text, flags=re.M)
            text = V2_HEADER_INDEX.sub(lambda m: m.group(1) + rel(m.group(2)), text)
            text = V2_QUEUE_KEY.sub(lambda m: "/" + rel(m.group(1)), text)
        text = re.sub(
            r"127\.0\.0\.1:(\d+)", lambda m: "127.0.0.1:" + self.ports.get(m.group(1), m.group(1)), text
        )
        text = self.ids_re.sub(lambda m: self.ids[m.group(1)], text)
        # Members are listed by id, and ids are random on both: the list's order carries no meaning.
        text = re.sub(
            r'(ETCD_INITIAL_CLUSTER=")([^"]*)(")',
            lambda m: m.group(1) + ",".join(sorted(m.group(2).split(","))) + m.group(3),
            text,
        )
        # etcdctl prints "Member %16x added to cluster %16x": an id under 16 hex digits comes
        # padded with spaces.
        text = re.sub(r"Member +<", "Member <", text)
        text = re.sub(r"cluster +<", "cluster <", text)
        text = VERSION.sub("<version>", text)
        if unordered:
            text = sort_answer(text)
        return text


def ttl_left(left, granted):
    return "<ttl>" if int(granted) - 2 <= int(left) <= int(granted) else left


def normalize_headers(text):
    """Lower-cases and sorts the header block after each HTTP status line; drops Date."""
    lines = text.split("\n")
    out = []
    i = 0
    while i < len(lines):
        out.append(lines[i])
        if HTTP_STATUS.match(lines[i]):
            i += 1
            headers = []
            while i < len(lines) and lines[i] != "":
                name, _, value = lines[i].partition(":")
                if name.lower() != "date":
                    headers.append(f"{name.lower()}: {value.strip()}")
                i += 1
            out.extend(sorted(headers))
            continue
        i += 1
    return "\n".join(out)


def normalize_status_lines(text):
    """etcdctl endpoint status -w simple: endpoint, id, version, db size, is leader, is learner,
    raft term, raft index, raft applied index, errors."""
    out = []
    for line in text.split("\n"):
        cells = line.split(", ")
        if len(cells) == 10:
            cells[3] = "<db-size>"
            cells[6] = "<raft-term>"
            cells[7] = cells[8] = "<raft-index>"
            line = ", ".join(cells)
        out.append(line)
    return "\n".join(out)


def normalize_tables(text, run):
    """etcdctl -w table: tokens in the columns that TABLE_TOKENS names (and HASH), padding
    collapsed."""
    out = []
    columns = None
    for line in text.split("\n"):
        if line.startswith("+") and line.endswith("+"):
            out.append(re.sub(r"-+", "-", line))
            continue
        if not (line.startswith("|") and line.endswith("|")):
            columns = None
            out.append(line)
            continue
        cells = [c.strip() for c in line[1:-1].split("|")]
        if columns is None:
            columns = cells
        else:
            for i, name in enumerate(columns):
                if i < len(cells):
                    if name in TABLE_TOKENS:
                        cells[i] = TABLE_TOKENS[name]
                    elif name == "HASH":
                        cells[i] = run.hash_token(cells[i])
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def sort_answer(text):
    """An answer whose order carries no meaning: a JSON value with every array sorted, or else
    its lines sorted. Tokens stand bare where numbers stood, so they are quoted to parse."""
    try:
        value = json.loads(re.sub(r'(?<=[:\[,])(<[^<>",]+>)(?=[,}\]])', r'"@@\1"', text))
    except ValueError:
        lines = text.split("\n")
        if any(line.startswith("+") for line in lines):
            # A table: its rows sorted, header and borders in place.
            rows = [i for i, line in enumerate(lines) if line.startswith("|")][1:]
            for i, line in zip(rows, sorted(lines[i] for i in rows)):
                lines[i] = line
            return "\n".join(lines)
        trailing = lines and lines[-1] == ""
        lines = sorted(line for line in lines if line != "")
        return "\n".join(lines) + ("\n" if trailing else "")

    def sort(v):
        if isinstance(v, list):
            return sorted((sort(x) for x in v), key=lambda x: json.dumps(x))
        if isinstance(v, dict):
            return {k: sort(x) for k, x in v.items()}
        return v

    return re.sub(r'"@@(<[^<>"]+>)"', r"\1", json.dumps(sort(value), separators=(",", ":"), ensure_ascii=False)) + "\n"
