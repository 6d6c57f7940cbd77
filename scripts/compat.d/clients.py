"""Other clients of etcd, run by scripts/compat's session: python-etcd3 (the v3 gRPC API) and
python-etcd (the v2 keys API). Each scenario prints what the library hands its caller, one line
per step, so that the suite compares them like etcdctl's answers.

    python clients.py SCENARIO HOST:PORT

Values the two servers choose differently (lease ids, v2 indexes, times) are printed as facts
about them (present, positive, within bounds), not as themselves.
"""

import sys
import threading
import time


def v3(endpoint):
    import etcd3

    host, port = endpoint.rsplit(":", 1)
    return etcd3.client(host=host, port=int(port), timeout=10)


def v3_kv(c):
    print("put", c.put("py/a", "1") is not None)
    value, meta = c.get("py/a")
    print("get", value, meta.version, meta.mod_revision == meta.create_revision)
    c.put("py/b", "2")
    c.put("py/c", "3")
    print("prefix", sorted((v.decode(), m.key.decode()) for v, m in c.get_prefix("py/")))
    print("range", [(v.decode(), m.key.decode()) for v, m in c.get_range("py/a", "py/c")])
    print("missing", c.get("py/none"))
    print("replace-ok", c.replace("py/a", "1", "10"))
    print("replace-stale", c.replace("py/a", "1", "11"))
    ok, responses = c.transaction(
        compare=[c.transactions.value("py/b") == "2"],
        success=[c.transactions.put("py/b", "20"), c.transactions.get("py/c")],
        failure=[c.transactions.delete("py/b")],
    )
    print("txn", ok, [[(v.decode(), m.key.decode()) for v, m in r] for r in responses if isinstance(r, list)])
    print("delete", c.delete("py/c"), c.delete("py/c"))
    print("delete-prefix", c.delete_prefix("py/").deleted)
    print("after", list(c.get_prefix("py/")))


def v3_lease(c):
    lease = c.lease(20)
    print("granted", lease.id > 0, lease.granted_ttl)
    c.put("pylease/k", "v", lease=lease)
    print("refresh", [r.TTL for r in lease.refresh()])
    print("remaining", 15 <= lease.remaining_ttl <= 20)
    print("keys", sorted(k.decode() for k in lease.keys))
    print("listed", lease.id in [l.id for l in c.get_all_leases()] if hasattr(c, "get_all_leases") else True)
    lease.revoke()
    print("revoked-key", c.get("pylease/k"))


def v3_watch(c):
    events = []

    def later():
        time.sleep(0.5)
        c.put("pywatch/k", "v1")

    threading.Thread(target=later).start()
    event = c.watch_once("pywatch/k", timeout=5)
    print("watch-once", type(event).__name__, event.key.decode(), event.value.decode())
    iterator, cancel = c.watch_prefix("pywatch/")
    threading.Thread(target=lambda: (time.sleep(0.3), c.put("pywatch/a", "x"), c.delete("pywatch/a"))).start()
    for e in iterator:
        events.append((type(e).__name__, e.key.decode()))
        if len(events) == 2:
            cancel()
    print("watch-prefix", events)


def v3_lock(c):
    with c.lock("pylock", ttl=5) as lock:
        print("held", lock.is_acquired())
        other = c.lock("pylock", ttl=5)
        print("second", other.acquire(timeout=1))
    print("released", other.acquire(timeout=3))
    other.release()


def v3_cluster(c):
    s = c.status()
    print("status", s.version.startswith("3.4."), s.db_size > 0, s.leader.name, s.raft_term > 0)
    print("members", sorted(m.name for m in c.members))
    print("alarms", list(c.list_alarms()))


def v2(endpoint):
    import etcd

    host, port = endpoint.rsplit(":", 1)
    return etcd.Client(host=host, port=int(port), read_timeout=10)


def v2_keys(c):
    import etcd

    r = c.write("/pyv2/a", "1")
    print("write", r.action, r.key, r.value, r.modifiedIndex == r.createdIndex)
    first = r.modifiedIndex
    print("read", c.read("/pyv2/a").value)
    print("cas-ok", c.test_and_set("/pyv2/a", "2", "1").value)
    try:
        c.test_and_set("/pyv2/a", "3", "1")
        print("cas-stale", "written")
    except etcd.EtcdCompareFailed as e:
        print("cas-stale", type(e).__name__)
    try:
        c.write("/pyv2/a", "4", prevExist=False)
    except etcd.EtcdAlreadyExist as e:
        print("create-existing", type(e).__name__)
    c.write("/pyv2/dir/x", "x")
    c.write("/pyv2/dir/y", "y")
    print("dir", sorted((n.key, n.value) for n in c.read("/pyv2/dir", recursive=True).leaves))
    q1 = c.write("/pyv2/queue", "job1", append=True)
    q2 = c.write("/pyv2/queue", "job2", append=True)
    print("queue", q1.key < q2.key, q1.key.startswith("/pyv2/queue/"), len(q1.key) - len("/pyv2/queue/"))
    t = c.write("/pyv2/ttl", "t", ttl=30)
    print("ttl", 29 <= t.ttl <= 30, t.expiration is not None)
    history = c.read("/pyv2/a", wait=True, waitIndex=first + 1)
    print("wait-history", history.action, history.value)
    try:
        c.read("/pyv2/none")
    except etcd.EtcdKeyNotFound as e:
        print("missing", type(e).__name__)
    print("delete-dir", c.delete("/pyv2", recursive=True).action)
    print("machines", len(c.machines))


SCENARIOS = {
    "v3-kv": (v3, v3_kv),
    "v3-lease": (v3, v3_lease),
    "v3-watch": (v3, v3_watch),
    "v3-lock": (v3, v3_lock),
    "v3-cluster": (v3, v3_cluster),
    "v2-keys": (v2, v2_keys),
}

if __name__ == "__main__":
    connect, run = SCENARIOS[sys.argv[1]]
    run(connect(sys.argv[2]))
