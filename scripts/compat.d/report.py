"""Compares the two sessions scripts/compat recorded and writes docs/compatibility.md.

A command's answer is its stdout, its stderr and its exit status, each normalized (see
normalize.py). Answers that differ are explained by known-differences.txt or fail the suite,
with a unified diff of each printed.
"""

import argparse
import difflib
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import normalize  # noqa: E402

VERDICTS = ("same", "differs", "not-yet")


def read(path, default=""):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return default


def load_session(run_dir):
    """The session's entries in order: ("section", title) or ("run"/"skip", id)."""
    entries = []
    for line in read(f"{run_dir}/out/order").splitlines():
        if line.startswith("## "):
            entries.append(("section", line[3:]))
        elif os.path.exists(f"{run_dir}/out/{line}.skip"):
            entries.append(("skip", line))
        else:
            entries.append(("run", line))
    return entries


def load_known(path):
    known = {}
    for n, line in enumerate(read(path).splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split("|", 2)]
        if len(parts) != 3 or parts[1] not in VERDICTS or not parts[2]:
            sys.exit(f"{path}:{n}: expected `<command-id> | same|differs|not-yet | reason`")
        if parts[0] in known:
            sys.exit(f"{path}:{n}: {parts[0]} listed twice")
        known[parts[0]] = (parts[1], parts[2])
    return known


def answer(run, run_dir, cid):
    base = f"{run_dir}/out/{cid}"
    cmd = read(f"{base}.cmd").rstrip("\n")
    unordered = os.path.exists(f"{base}.unordered")
    out = run.normalize(cmd, read(f"{base}.out"), unordered)
    err = run.normalize(cmd, read(f"{base}.err"), unordered, stderr=True)
    rc = read(f"{base}.rc").strip()
    return cmd, out, err, rc


def block(out, err, rc):
    text = out if out.endswith("\n") or not out else out + "\n"
    if err.strip():
        text += "--- stderr\n" + err + ("" if err.endswith("\n") else "\n")
    return text + f"--- exit {rc}\n"


def summary(out, err, rc):
    """One line for the table: the first line of output (or of stderr) that says something, and
    a non-zero exit. A table's first row; JSON with its response header elided."""
    first = ""
    for text in (out, err):
        lines = [line for line in text.splitlines() if line.strip()]
        rows = [line for line in lines if line.startswith("|")]
        first = rows[1] if len(rows) > 1 else rows[0] if rows else lines[0] if lines else ""
        if first:
            break
    return code(shorten(elide_header(first))) + exit_note(rc)


def difference(etcd, cairn):
    """What to show of two answers that differ: for each side, the first line the other lacks,
    cut around where the two first part."""
    e_lines, c_lines = (
        [line for line in (a[0] + a[1]).splitlines() if line.strip() and not line.startswith("+")]
        for a in (etcd, cairn)
    )
    e_only = [line for line in e_lines if line not in c_lines]
    c_only = [line for line in c_lines if line not in e_lines]
    e_first = elide_header(e_only[0]) if e_only else ""
    c_first = elide_header(c_only[0]) if c_only else ""
    start = 0
    if e_first and c_first:
        while start < min(len(e_first), len(c_first)) and e_first[start] == c_first[start]:
            start += 1
        start = max(0, start - 20)
    show = lambda line, rc: (code(shorten(line, start)) if line else "(no line the other lacks)") + exit_note(rc)
    return f"etcd: {show(e_first, etcd[2])}<br>Cairn: {show(c_first, cairn[2])}"


def elide_header(line):
    line = re.sub(r'"header":\{[^{}]*\}', '"header":…', line)
    return re.sub(r'"cluster_id":<cluster-id>,"member_id":<member-id>,("revision":\d+,)?"raft_term":<n>', '"header":…', line)


def shorten(line, start=0, width=70):
    head = "…" if start else ""
    line = line[start:]
    return head + (line if len(line) <= width else line[: width - 1] + "…")


def code(text):
    return f"`{md(text)}`" if text else "(no output)"


def exit_note(rc):
    return "" if rc == "0" else f", exit {rc}"


def md(text):
    return text.replace("`", "'").replace("|", "\\|")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--etcd", required=True)
    p.add_argument("--cairn", required=True)
    p.add_argument("--known", required=True)
    p.add_argument("--doc", required=True)
    p.add_argument("--etcd-version", default="etcd")
    p.add_argument("--cairn-version", default="cairn")
    a = p.parse_args()

    entries = load_session(a.etcd)
    if entries != load_session(a.cairn):
        sys.exit("the two sessions did not run the same commands")
    known = load_known(a.known)
    ids = [cid for kind, cid in entries if kind != "section"]
    for cid in known:
        if cid not in ids:
            sys.exit(f"{a.known}: {cid} is not a command of the session")

    runs = {}
    for side, run_dir in (("etcd", a.etcd), ("cairn", a.cairn)):
        answers = []
        for kind, cid in entries:
            if kind == "run":
                base = f"{run_dir}/out/{cid}"
                answers.append((read(f"{base}.cmd"), read(f"{base}.out"), read(f"{base}.err")))
        runs[side] = (normalize.Run(run_dir, answers), run_dir)

    rows = []
    counts = {"same": 0, "differs": 0, "not-yet": 0, "not run": 0, "unexplained": 0}
    failures = []
    stale = []
    for kind, cid in entries:
        if kind == "section":
            rows.append(("section", cid))
            continue
        if kind == "skip":
            reason = read(f"{a.etcd}/out/{cid}.skip").strip()
            counts["not run"] += 1
            rows.append(("row", cid, "", "", f"not run: {md(reason)}"))
            continue
        cmd, *e = answer(runs["etcd"][0], a.etcd, cid)
        _, *c = answer(runs["cairn"][0], a.cairn, cid)
        etcd_block, cairn_block = block(*e), block(*c)
        verdict, reason = known.get(cid, (None, ""))
        if etcd_block == cairn_block:
            if verdict in ("differs", "not-yet"):
                stale.append(cid)
            counts["same"] += 1
            result = summary(*e)
            text = "same" + (f": {md(reason)}" if verdict == "same" else "")
        else:
            result = difference(e, c)
            if verdict in ("differs", "not-yet"):
                counts[verdict] += 1
                text = ("differs: " if verdict == "differs" else "not yet: ") + md(reason)
            else:
                counts["unexplained"] += 1
                text = "**unexplained difference**"
                diff = difflib.unified_diff(
                    etcd_block.splitlines(keepends=True),
                    cairn_block.splitlines(keepends=True),
                    f"etcd/{cid}",
                    f"cairn/{cid}",
                )
                failures.append(f"=== {cid}: {cmd}\n" + "".join(diff))
        rows.append(("row", cid, f"`{md(cmd)}`", result, text))

    write_doc(a, rows, counts)

    for cid in stale:
        print(f"scripts/compat: {cid} now answers as etcd does; drop it from known-differences.txt", file=sys.stderr)
    for f in failures:
        print(f, file=sys.stderr)
    total = sum(counts.values())
    print(
        f"scripts/compat: {total} commands: {counts['same']} same, {counts['differs']} differ with a reason, "
        f"{counts['not-yet']} not yet, {counts['not run']} not run, {counts['unexplained']} unexplained",
        file=sys.stderr,
    )
    return 1 if failures else 0


INTRO = """\
# Compatibility with etcd 3.4

This page is generated by `scripts/compat`; rerun it rather than edit it. The suite starts a
3-member etcd cluster ({etcd_version}, with `--enable-v2`) and a 3-member Cairn cluster
({cairn_version}) on free loopback ports, runs the same session against each (the commands
are in `scripts/compat.d/session`), records each command's stdout, stderr and exit status,
normalizes them and compares them. The clients are etcd 3.4's own: `etcdctl` (API v3, talking
to member 1 unless the command names `--endpoints`), and `curl` for the v2 keys API, the v3 JSON
gateway and the other HTTP paths. etcdctl's JSON `"level":"warn"` lines on stderr are dropped:
they repeat the error with a timestamp and a client id.

Normalization (`scripts/compat.d/normalize.py`) forgives only what legitimately differs
between two clusters:

- ports and directories, picked at run time;
- cluster and member ids: etcd hashes the peer URLs with SHA-1, Cairn with FNV-64, so they
  differ even for equal URLs. Member names stand beside them (m1, m2, m3 on both sides). As etcd
  lists members in the order of their ids, member listings are compared as sets, and
  `member-list-order` checks the order on its own;
- lease ids, the server's choice: numbered by first appearance, so "the same lease" still
  counts;
- HashKV hashes: Cairn's keyspace hash is computed differently from etcd's, by design. They
  are numbered by distinct value, so "every member agrees" still counts;
- raft term and index, database sizes (bbolt's pages against Cairn's files), durations,
  timestamps, uptimes and the `Date` header;
- the server version: etcd says 3.4.x, Cairn says 3.4.0+cairn.X (in Status); both become
  `<version>`;
- the time left on a lease when within 2 s of its TTL, and a v2 node's `ttl` (`v2-ttl` checks
  it on its own);
- v2 indexes, taken relative to the index before the session's first v2 write: etcd's v2 store
  also counts its own membership records under `/0`, which Cairn does not keep. Their number of
  digits changes a v2 answer's `Content-Length`, which is forgiven too;
- HTTP header names are lower-cased and sorted (case and order carry no meaning in HTTP/1.1),
  and table padding is collapsed.

Revisions are not normalized: both clusters see the same writes in the same order. Commands
whose normalized answers still differ are listed, with the reason, in
`scripts/compat.d/known-differences.txt`; any other difference fails the suite.

| verdict | commands |
| --- | --- |
| same | {same} |
| differs, for a reason given | {differs} |
| not yet: comes with work still to do | {not_yet} |
| not run | {not_run} |
"""


def write_doc(a, rows, counts):
    lines = [
        INTRO.format(
            etcd_version=a.etcd_version,
            cairn_version=a.cairn_version,
            same=counts["same"],
            differs=counts["differs"],
            not_yet=counts["not-yet"],
            not_run=counts["not run"],
        )
    ]
    if counts["unexplained"]:
        lines.append(f"| **unexplained** | {counts['unexplained']} |\n")
    for row in rows:
        if row[0] == "section":
            lines.append(f"\n## {row[1]}\n\n| id | command | result | verdict |\n| --- | --- | --- | --- |\n")
        else:
            _, cid, cmd, result, text = row
            lines.append(f"| {cid} | {cmd} | {result} | {text} |\n")
    with open(a.doc, "w") as f:
        f.write("".join(lines))


if __name__ == "__main__":
    sys.exit(main())
