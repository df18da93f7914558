"""A writer SIGKILLed while it writes loses only the put in flight: every
put it acknowledged is there, whole, and the store is sound."""
import os
import random
import signal
import struct
import time

import kv
import workers

NKEYS = 100
ROUNDS = 8
SIZES = (10, 300, 4000, 60000, 900000)  # large ones keep the lock longer


def writer(store, ack_fd, first_seq):
    """Put self-checking values forever; after each put returns, write its
    sequence number to ack_fd. Never returns (SIGKILL ends it)."""
    rng = random.Random(first_seq)
    seq = first_seq
    while True:
        seq += 1
        k = b"c%d" % (seq % NKEYS)
        store.set(k, workers.make_value(k, 0, seq, rng.choice(SIZES)))
        os.write(ack_fd, struct.pack("<Q", seq))


def read_acks(fd):
    data = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    n = len(data) // 8
    return list(struct.unpack("<%dQ" % n, data[:n * 8]))


def test_sigkill_mid_put(names):
    name = names("crash")
    # Room for every key at the largest size many times over: a key that
    # is missing must have been lost, not evicted.
    store = kv.Store.create(name, size="256M", max_value="1M")
    acked = {}   # key -> last acknowledged sequence number
    seq = 0
    recoveries0 = store.stats()["recoveries"]
    rng = random.Random(1)
    for rnd in range(ROUNDS):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                writer(store, w, seq)
            finally:
                os._exit(3)
        os.close(w)
        time.sleep(rng.uniform(0.05, 0.4))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        acks = read_acks(r)
        os.close(r)
        assert acks, "round %d: the writer acknowledged nothing" % rnd
        assert acks == list(range(seq + 1, seq + 1 + len(acks)))
        for s in acks:
            acked[b"c%d" % (s % NKEYS)] = s
        in_flight = acks[-1] + 1  # the only put that may be half done
        seq = in_flight  # the next writer starts past it

        # A fresh attach: its first write (check takes the lock) recovers a
        # lock the dead writer held, then verifies every invariant.
        with kv.Store(name) as t:
            assert t.check() == []
            newer = 0
            for k, s in acked.items():
                w, got = workers.check_value(k, t[k])
                assert got >= s, "round %d: %r lost its put %d" % (rnd, k, s)
                if got > s:
                    # Only the put in flight may have landed unacknowledged.
                    assert got == in_flight, (k, got, in_flight)
                    newer += 1
            assert newer <= 1
            # Keys never acknowledged hold nothing, or the put in flight.
            for i in range(NKEYS):
                k = b"c%d" % i
                if k not in acked:
                    v = t.get(k)
                    assert v is None or \
                        workers.check_value(k, v)[1] == in_flight
            # A put in flight that landed is there from now on, as if it
            # had been acknowledged: later rounds must find it or newer.
            for i in range(NKEYS):
                k = b"c%d" % i
                v = t.get(k)
                if v is not None and workers.check_value(k, v)[1] == in_flight:
                    acked[k] = in_flight
            t["after-round-%d" % rnd] = "writable"
    st = store.stats()
    print("%d kills, %d puts acknowledged, %d lock recoveries" %
          (ROUNDS, seq - ROUNDS, st["recoveries"] - recoveries0))
    assert st["evictions"] == 0
    assert store.check() == []
    store.close()
