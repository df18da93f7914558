# compare.awk - the one table of bench/compare.sh: kv against Redis,
# memcached and LMDB, row by row, with the brief's targets.
#
# Input files (in this order):
#   raw.csv  the rows of kv-bench and peer-bench (their common CSV columns:
#            mode,phase,unit,keys,key_size,value_size,procs,ops,seconds,
#            ops_per_s,ns_per_op,p50_ns,p99_ns,p999_ns,errors,cpu_secs)
#   mem.csv  system,keys,key_size,value_size,bytes_per_item,
#            overhead_per_item,waste_pct,overhead_ex_waste (the last two
#            for kv only)
# Variables: K (keys of the main runs), S (keys of the cache-resident
# runs), N (CPUs), WR (the writer's rate), V (value size), csv (the file
# to write the table to as CSV), sweep (the kv sweep, "keys:value ...").
#
# A row compares like with like: the same phase, keys, value size and
# number of processes; kv/peer is kv's ops/s over the peer's. Rows with a
# target say PASS or MISS; a second target on the same workload gets a
# continuation row (workload shown as ").

BEGIN {
	FS = ","
	peers = "redis memcached lmdb"
	np = split(peers, peer, " ")
}

FILENAME ~ /raw\.csv$/ {
	if ($1 == "mode")
		next
	k = $1 SUBSEP $2 SUBSEP $4 SUBSEP $6 SUBSEP $7
	ops[k] = $10 + 0
	nsop[k] = $11 + 0
	p50[k] = $12
	p99[k] = $13
	errs[k] = $15 + 0
	if ($16 + 0 > 0 && $9 > 0 && $7 > 0)
		share[k] = $16 / ($9 * $7)
	next
}

FILENAME ~ /mem\.csv$/ {
	if ($1 == "system")
		next
	m = $1 SUBSEP $2 SUBSEP $4
	mem_over[m] = $6
	mem_bytes[m] = $5
	if ($7 != "")
		mem_waste[m] = $7
	if ($8 != "")
		mem_exw[m] = $8
	next
}

function get(mode, phase, keys, vsize, procs,    k) {
	k = mode SUBSEP phase SUBSEP keys SUBSEP vsize SUBSEP procs
	return (k in ops) ? ops[k] : ""
}

# The CPU share of a row's processes, as " cpu 97%", or "".
function cpu(mode, phase, keys, vsize, procs,    k) {
	k = mode SUBSEP phase SUBSEP keys SUBSEP vsize SUBSEP procs
	return (k in share) ? sprintf(", cpu %.0f%%", 100 * share[k]) : ""
}

function shr(mode, phase, keys, vsize, procs,    k) {
	k = mode SUBSEP phase SUBSEP keys SUBSEP vsize SUBSEP procs
	return (k in share) ? share[k] : 0
}

function fmt(x) {
	if (x == "")
		return "-"
	if (x >= 1e6)
		return sprintf("%.2fM", x / 1e6)
	if (x >= 1e3)
		return sprintf("%.1fk", x / 1e3)
	return sprintf("%.0f", x)
}

function ratio(a, b) {
	if (a == "" || b == "" || b == 0)
		return ""
	return a / b
}

function fratio(r) {
	if (r == "")
		return "-"
	if (r >= 100)
		return sprintf("%.0fx", r)
	if (r >= 10)
		return sprintf("%.1fx", r)
	return sprintf("%.2fx", r)
}

function verdict(value, need,    v) {
	if (value == "")
		return "n/a"
	return value >= need ? "PASS" : "MISS"
}

function csvq(s) {
	gsub(/"/, "\"\"", s)
	return "\"" s "\""
}

# One row. kvv: kv's figure; pv[1..3]: the peers'; tgt/res: target text
# and PASS/MISS/"" (empty: no target).
function emit(label, kvv, r, m, l, tgt, res,    cells) {
	lastlabel = label
	printf "%-46s %9s %9s %9s %9s %8s %8s %8s  %-40s %s\n", label, \
	    fmt(kvv), fmt(r), fmt(m), fmt(l), fratio(ratio(kvv, r)), \
	    fratio(ratio(kvv, m)), fratio(ratio(kvv, l)), tgt, res
	if (csv != "")
		printf "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n", csvq(label), kvv, r, \
		    m, l, ratio(kvv, r), ratio(kvv, m), ratio(kvv, l), \
		    csvq(tgt), res > csv
}

# A target on the row above (same workload).
function more(tgt, res) {
	printf "%-46s %9s %9s %9s %9s %8s %8s %8s  %-40s %s\n", "  \"", "", \
	    "", "", "", "", "", "", tgt, res
	if (csv != "")
		printf "%s,,,,,,,,%s,%s\n", csvq(lastlabel), csvq(tgt), res > csv
}

# Memory: every store's bytes per item beyond key and value (all of it:
# index, headers, class rounding); the target is judged on kv's overhead
# without its size-class waste, which has a target of its own.
function memrow(label, keys,    m, exw, t) {
	m = "kv" SUBSEP keys SUBSEP V
	exw = (m in mem_exw) ? mem_exw[m] : ""
	t = exw == "" ? "<= 32 B/item" : \
	    sprintf("<= 32 B/item w/o waste: %.1f B", exw)
	if (exw == "")
		exw = mem_get("kv", keys)
	printf "%-46s %9s %9s %9s %9s %8s %8s %8s  %-40s %s\n", label, \
	    memfmt("kv", keys), memfmt("redis", keys), \
	    memfmt("memcached", keys), memfmt("lmdb", keys), "", "", "", \
	    t, verdict_le(exw, 32)
	if (csv != "")
		printf "%s,%s,%s,%s,%s,,,,%s,%s\n", csvq(label), \
		    mem_get("kv", keys), mem_get("redis", keys), \
		    mem_get("memcached", keys), mem_get("lmdb", keys), \
		    csvq(t), verdict_le(exw, 32) > csv
}

function mem_get(sys, keys,    m) {
	m = sys SUBSEP keys SUBSEP V
	return (m in mem_over) ? mem_over[m] : ""
}

function memfmt(sys, keys,    v) {
	v = mem_get(sys, keys)
	return v == "" ? "-" : sprintf("%.1fB", v)
}

function verdict_le(value, limit) {
	if (value == "")
		return "n/a"
	return value + 0 <= limit ? "PASS" : "MISS"
}

function kilo(n) {
	if (n >= 1e6 && n % 1e6 == 0)
		return (n / 1e6) "M"
	if (n >= 1e3 && n % 1e3 == 0)
		return (n / 1e3) "k"
	return n
}

function size(b) {
	if (b >= 1024 && b % 1024 == 0)
		return (b / 1024) " KiB"
	return b " B"
}

END {
	KL = kilo(K)
	SL = kilo(S)
	line = sprintf("%-46s %9s %9s %9s %9s %8s %8s %8s  %-40s %s", \
	    "workload (ops/s; per row: same keys, procs)", "kv", "redis", \
	    "memcached", "lmdb", "kv/redis", "kv/memc", "kv/lmdb", \
	    "target (brief)", "result")
	print line
	gsub(/./, "-", line)
	print line
	if (csv != "")
		print "workload,kv_ops_s,redis_ops_s,memcached_ops_s," \
		    "lmdb_ops_s,kv_over_redis,kv_over_memcached,kv_over_lmdb," \
		    "target,result" > csv

	# get-hit, one process: kv's reader process against one client.
	kv1 = get("readers", "get-hit", K, V, 1)
	if (kv1 == "")
		kv1 = get("single", "get-hit", K, V, 1)
	r1 = get("redis", "get-hit", K, V, 1)
	m1 = get("memcached", "get-hit", K, V, 1)
	l1 = get("lmdb", "get-hit", K, V, 1)
	emit("get-hit " KL " keys, 1 proc, 1 key/request", kv1, r1, m1, l1, \
	    ">= 1.5x LMDB", verdict(ratio(kv1, l1), 1.5))
	more(">= 100x Redis 1 req/round trip", verdict(ratio(kv1, r1), 100))
	more(sprintf("(info) kv_mget-16: %s Redis 1 req/rtt", \
	    fratio(ratio(get("single", "mget-16", K, V, 1), r1))), "")
	chase = nsop["single" SUBSEP "mem-chase" SUBSEP K SUBSEP V SUBSEP 1]
	if (chase > 0) {
		limit = 1e9 / (2 * chase)
		more(sprintf(">= 80%% of 2 misses (%.0f ns): %s", chase, \
		    fmt(0.8 * limit)), verdict(kv1, 0.8 * limit))
	}

	# Reader scaling, with and without the writer.
	for (n = 2; n <= N; n++) {
		kvn = get("readers", "get-hit", K, V, n)
		emit("get-hit " KL ", " n " procs", kvn, \
		    get("redis", "get-hit", K, V, n), \
		    get("memcached", "get-hit", K, V, n), \
		    get("lmdb", "get-hit", K, V, n), \
		    sprintf(">= %.1fx one reader (%s%s)", 0.9 * n, \
		    fratio(ratio(kvn, kv1)), cpu("readers", "get-hit", K, V, n)), \
		    verdict(ratio(kvn, kv1), 0.9 * n))
		# When other processes took CPU time, what the readers did
		# per CPU-second they got says what they would do alone.
		s1 = shr("readers", "get-hit", K, V, 1)
		sn = shr("readers", "get-hit", K, V, n)
		if (s1 > 0 && sn > 0 && sn < 0.9)
			more(sprintf("(info) per CPU-second they got: %s", \
			    fratio(ratio(kvn / sn, kv1 / s1))), "")
	}
	ro = get("readers-ro", "get-hit", K, V, N)
	if (ro != "")
		emit("get-hit " KL ", " N " procs, KV_RDONLY attach", ro, "", \
		    "", "", sprintf("(info) %s of KV_RDWR", \
		    fratio(ratio(ro, get("readers", "get-hit", K, V, N)))), "")
	for (n = 1; n <= N; n++) {
		kvw = get("readers+w", "get-hit", K, V, n)
		if (kvw == "")
			continue
		wr = get("writer", "put-paced-r" n, K, V, 1)
		emit(sprintf("get-hit %s, %d proc%s + writer %s/s", KL, n, \
		    n > 1 ? "s" : "", fmt(wr == "" ? WR : wr)), kvw, "", "", "", \
		    sprintf(">= %.1fx one reader (%s%s)", 0.8 * n, \
		    fratio(ratio(kvw, kv1)), cpu("readers+w", "get-hit", K, V, n)), \
		    verdict(ratio(kvw, kv1), 0.8 * n))
	}

	# Batched gets.
	kb = get("single", "mget-16", K, V, 1)
	lb = get("lmdb", "mget-16", K, V, 1)
	rb = get("redis", "mget-16", K, V, 1)
	emit("batched get " KL ", 16 keys/call, 1 proc", kb, rb, \
	    get("memcached", "mget-16", K, V, 1), lb, \
	    ">= 5x LMDB per core", verdict(ratio(kb, lb), 5))
	more(">= 3x Redis pipelined per client", verdict(ratio(kb, rb), 3))
	more(sprintf("(info) unbatched kv get: %s Redis", \
	    fratio(ratio(kv1, rb))), "")
	emit("batched get " KL ", 64 keys/call, 1 proc", \
	    get("single", "mget-64", K, V, 1), get("redis", "mget-64", K, V, 1), \
	    get("memcached", "mget-64", K, V, 1), \
	    get("lmdb", "mget-64", K, V, 1), "", "")
	emit("(info) kv get-hit loop in one process", \
	    get("single", "get-hit", K, V, 1), "", "", "", \
	    sprintf("mget-16 = %s this loop", \
	    fratio(ratio(kb, get("single", "get-hit", K, V, 1)))), "")
	for (n = 2; n <= N; n++)
		emit("batched get " KL ", 16 keys/call, " n " procs", "", \
		    get("redis", "mget-16", K, V, n), \
		    get("memcached", "mget-16", K, V, n), \
		    get("lmdb", "mget-16", K, V, n), "", "")

	# Cache-resident.
	ks = get("single", "get-hit-10k", S, V, 1)
	if (ks == "")
		ks = get("single", "get-hit", S, V, 1)
	emit("get-hit " SL " keys (cache-resident), 1 proc", ks, \
	    get("redis", "get-hit", S, V, 1), \
	    get("memcached", "get-hit", S, V, 1), \
	    get("lmdb", "get-hit", S, V, 1), ">= 15M ops/s per core", \
	    verdict(ks, 15e6))
	emit("batched get " SL ", 16 keys/call, 1 proc", \
	    get("single", "mget-16", S, V, 1), \
	    get("redis", "mget-16", S, V, 1), \
	    get("memcached", "mget-16", S, V, 1), \
	    get("lmdb", "mget-16", S, V, 1), "", "")

	# Writes.
	kp = get("single", "put-replace", K, V, 1)
	emit("put (replace, same size) " KL ", 1 writer", kp, \
	    get("redis", "put-replace", K, V, 1), \
	    get("memcached", "put-replace", K, V, 1), \
	    get("lmdb", "put-replace", K, V, 1), ">= 1M ops/s", \
	    verdict(kp, 1e6))
	emit("mixed 90% get / 10% put " KL ", 1 proc", \
	    get("single", "mixed", K, V, 1), get("redis", "mixed", K, V, 1), \
	    get("memcached", "mixed", K, V, 1), get("lmdb", "mixed", K, V, 1), \
	    "", "")

	# Memory.
	memrow("memory: bytes/item beyond key+value, " KL, K)
	worst = ""
	wlab = ""
	for (m in mem_waste) {
		split(m, f, SUBSEP)
		if (f[1] != "kv")
			continue
		if (worst == "" || mem_waste[m] + 0 > worst + 0) {
			worst = mem_waste[m]
			wlab = f[3] " B values"
		}
	}
	if (worst != "") {
		printf "%-46s %9s %9s %9s %9s %8s %8s %8s  %-40s %s\n", \
		    "size-class waste, worst of the sweep", \
		    sprintf("%.1f%%", worst), "", "", "", "", "", "", \
		    "<= 15% (worst: " wlab ")", verdict_le(worst, 15)
		if (csv != "")
			printf "%s,%s,,,,,,,%s,%s\n", \
			    csvq("size-class waste, worst of the sweep (%)"), \
			    worst, csvq("<= 15%"), verdict_le(worst, 15) > csv
	}

	# The kv sweep: key counts and value sizes.
	ns = split(sweep, sw, " ")
	for (i = 1; i <= ns; i++) {
		split(sw[i], kvp, ":")
		sk = kvp[1]
		sv = kvp[2]
		g = get("single", "get-hit", sk, sv, 1)
		mg = get("single", "mget-16", sk, sv, 1)
		mm = "kv" SUBSEP sk SUBSEP sv
		info = sprintf("mget-16 %s; %s B/item; waste %s%%", fmt(mg), \
		    (mm in mem_over) ? sprintf("%.0f", mem_over[mm]) : "-", \
		    (mm in mem_waste) ? sprintf("%.1f", mem_waste[mm]) : "-")
		printf "%-46s %9s %9s %9s %9s %8s %8s %8s  %-40s %s\n", \
		    sprintf("sweep: kv get-hit %s keys x %s", kilo(sk), \
		    size(sv)), fmt(g), "", "", "", "", "", "", info, ""
		if (csv != "")
			printf "%s,%s,,,,,,,%s,\n", csvq(sprintf("sweep: kv " \
			    "get-hit %s keys x %s", kilo(sk), size(sv))), g, \
			    csvq(info) > csv
	}

	# kv rows of the table whose processes did not get their CPUs.
	low = ""
	for (k in share) {
		split(k, f, SUBSEP)
		if ((f[1] == "single" || f[1] ~ /^readers/) && f[2] != "load" && \
		    f[4] == V && (f[3] == K || f[3] == S) && share[k] < 0.9)
			low = low sprintf("%s %s %s x%s %.0f%%; ", f[1], f[2], \
			    kilo(f[3]), f[5], 100 * share[k])
	}
	if (low != "")
		print "note: kv runs that got < 90% of their CPUs (others " \
		    "ran too): " low

	# Anything that reported errors.
	for (k in errs)
		if (errs[k] > 0) {
			split(k, f, SUBSEP)
			printf "ERRORS: %s %s keys=%s procs=%s: %d\n", f[1], f[2], \
			    f[3], f[5], errs[k]
		}
}
