"""One store, two languages: what Python puts, `kv get` reads exactly, and
what `kv put` writes, Python gets exactly."""
import os
import subprocess

import pytest


VALUES = [
    b"hello",
    b"",
    bytes(range(256)),
    b"\0leading and trailing NUL\0",
    "ünïcödé ✓ 鍵".encode(),
    os.urandom(100000),
]


def run(kv_bin, store, *args, data=None):
    return subprocess.run([kv_bin, "-s", store.name, *args], input=data,
                          capture_output=True, timeout=30)


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_python_put_kv_get(store, kv_bin, value):
    store["from-python"] = value
    r = run(kv_bin, store, "get", "from-python")
    assert r.returncode == 0, r.stderr
    assert r.stdout == value  # exact bytes: stdout is not a terminal


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_kv_put_python_get(store, kv_bin, value):
    r = run(kv_bin, store, "put", "from-cli", data=value)  # value on stdin
    assert r.returncode == 0, r.stderr
    assert store["from-cli"] == value
    assert store.get_many(["from-cli"]) == {"from-cli": value}


def test_utf8_keys_both_ways(store, kv_bin):
    key = "clé-ключ-鍵"
    store[key] = "from python"
    r = run(kv_bin, store, "get", key)
    assert r.stdout == b"from python"
    r = run(kv_bin, store, "put", key + "2", "from the cli")
    assert r.returncode == 0
    assert store[key + "2"] == b"from the cli"
    r = run(kv_bin, store, "keys", "clé-*")
    assert sorted(r.stdout.split(b"\n")[:-1]) == sorted(store.keys("clé-*"))


def test_ttl_incr_del_both_ways(store, kv_bin):
    store.set("t", "v", ttl=120)
    r = run(kv_bin, store, "ttl", "t")
    assert r.returncode == 0 and 119 <= float(r.stdout) <= 120
    run(kv_bin, store, "put", "--ttl", "30s", "t2", "v")
    assert 29 < store.ttl("t2") <= 30
    assert store.incr("n", 5) == 5
    r = run(kv_bin, store, "incr", "n")
    assert r.stdout.strip() == b"6"
    assert store.incr("n") == 7
    r = run(kv_bin, store, "del", "n")
    assert r.returncode == 0 and "n" not in store
    store.delete("t")
    r = run(kv_bin, store, "get", "t")
    assert r.returncode == 1  # key not found


def test_cas_versions_agree(store, kv_bin):
    store["k"] = "v1"
    _, version = store.gets("k")
    r = run(kv_bin, store, "put", "--cas", str(version), "k", "v2")
    assert r.returncode == 0, r.stderr
    assert store["k"] == b"v2"
    assert store.cas("k", "v3", version) is False


def test_check_and_flush_both_ways(store, kv_bin):
    store.set_many({"k%d" % i: "v" for i in range(20)})
    r = run(kv_bin, store, "check")
    assert r.returncode == 0 and r.stdout.strip() == b"ok"
    r = run(kv_bin, store, "flush", "--yes")
    assert r.returncode == 0
    assert len(store) == 0 and store.check() == []
