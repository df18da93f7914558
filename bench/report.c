/*
 * report.c - where results go: an aligned table on stdout, optionally a CSV
 * file with a header row, and progress on stderr.
 *
 * Every mode reports through bench_report_row(), so the table and the CSV
 * have the same columns whatever produced the row. ns/op is per process:
 * wall time times processes over operations, the cost one core pays.
 * cpu% is the CPU time the processes used over wall time times processes:
 * under ~95 % they did not have their cores to themselves (another
 * process ran, or they slept), and their figures are lower for it.
 */
#include <math.h>
#include <stdio.h>

#include "bench.h"

double bench_ops_per_s(const struct bench_result *r)
{
	return r->secs > 0 ? (double)r->ops / r->secs : 0;
}

double bench_cpu_share(const struct bench_result *r)
{
	unsigned procs = r->procs ? r->procs : 1;
	if (r->cpu_secs <= 0 || r->secs <= 0)
		return -1;
	return r->cpu_secs / (r->secs * procs);
}

bool bench_contended(const struct bench_result *r, double min_cpu)
{
	double s = bench_cpu_share(r);
	return min_cpu > 0 && s >= 0 && s < min_cpu;
}

double bench_ns_per_op(const struct bench_result *r)
{
	return r->ops ? r->secs * 1e9 * (r->procs ? r->procs : 1) /
	                    (double)r->ops
	              : NAN;
}

void bench_report_header(struct bench_report *rep)
{
	printf("%-14s %-10s %5s %10s %12s %10s %9s %9s %9s %9s %5s\n",
	       "phase", "mode", "unit", "keys", "ops", "M ops/s", "ns/op",
	       "p50", "p99", "p99.9", "cpu%");
	if (rep->csv)
		fprintf(rep->csv, "mode,phase,unit,keys,key_size,value_size,"
		                  "procs,ops,seconds,ops_per_s,ns_per_op,"
		                  "p50_ns,p99_ns,p999_ns,errors,cpu_secs\n");
}

static void lat(char *out, size_t n, double v)
{
	if (isnan(v))
		snprintf(out, n, "-");
	else
		snprintf(out, n, "%.0f", v);
}

void bench_report_row(struct bench_report *rep, const struct bench_result *r)
{
	char p50[16], p99[16], p999[16], cpu[16] = "-";
	unsigned procs = r->procs ? r->procs : 1;

	if (r->cpu_secs > 0 && r->secs > 0)
		snprintf(cpu, sizeof cpu, "%.0f",
		         100.0 * r->cpu_secs / (r->secs * procs));
	lat(p50, sizeof p50, r->p50_ns);
	lat(p99, sizeof p99, r->p99_ns);
	lat(p999, sizeof p999, r->p999_ns);
	printf("%-14s %-10s %5s %10llu %12llu %10.3f %9.1f %9s %9s %9s %5s",
	       r->phase, r->mode, r->unit, (unsigned long long)r->keys,
	       (unsigned long long)r->ops, bench_ops_per_s(r) / 1e6,
	       bench_ns_per_op(r), p50, p99, p999, cpu);
	if (r->errors)
		printf("  (%llu errors)", (unsigned long long)r->errors);
	printf("\n");
	fflush(stdout);
	if (rep->csv) {
		fprintf(rep->csv,
		        "%s,%s,%s,%llu,%u,%u,%u,%llu,%.6f,%.1f,%.2f,%s,%s,%s,"
		        "%llu,%.4f\n",
		        r->mode, r->phase, r->unit, (unsigned long long)r->keys,
		        rep->key_size, rep->value_size, r->procs ? r->procs : 1,
		        (unsigned long long)r->ops, r->secs, bench_ops_per_s(r),
		        bench_ns_per_op(r), isnan(r->p50_ns) ? "" : p50,
		        isnan(r->p99_ns) ? "" : p99,
		        isnan(r->p999_ns) ? "" : p999,
		        (unsigned long long)r->errors, r->cpu_secs);
		fflush(rep->csv);
	}
}

void bench_progress_phase(const struct bench_report *rep, const char *phase,
                          const char *what)
{
	if (rep->quiet)
		return;
	fprintf(stderr, "%s: %s: %s\n", rep->prog ? rep->prog : "kv-bench",
	        phase, what);
}

void bench_progress_pct(const struct bench_report *rep, const char *phase,
                        uint64_t done, uint64_t total)
{
	if (rep->quiet || !rep->tty || total == 0)
		return;
	fprintf(stderr, "\r%s: %s: %3u%%", rep->prog ? rep->prog : "kv-bench",
	        phase, (unsigned)(done * 100 / total));
}

void bench_progress_done(const struct bench_report *rep)
{
	if (rep->quiet || !rep->tty)
		return;
	fprintf(stderr, "\r\033[K");
}
