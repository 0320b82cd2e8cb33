// Package perf holds the performance comparison of pkg/hicachefile's two
// interfaces: the old per-key copy interface (BatchSet/BatchGet around
// GetDataPage, GetDummyFlatDataPage and SetFromFlatDataPage) against the
// zero-copy V1 interface (BatchSetV1/BatchGetV1), with plain pwrite/pread of
// the same pages, one file per page, as the floor both are measured against.
//
// The seed is SGLang's test_hicache_storage_performance_comparison.py, the
// Python test this comparison reproduces: its four scenarios, its names and
// its output format. Every scenario is a gmeasure experiment under the seed's
// name, run for each model preset. The specs are Serial and labelled "perf";
// they never fail on a timing, only on an error or on a page whose bytes came
// back wrong. Before each timed write the file system's dirty pages are
// written back, untimed (syncfs), so that no timing pays for the one before.
//
// Each scenario gives every interface's median time as a ratio to the
// floor's ("x the floor's time"), with a legend under it. The run ends with
// a summary table within 120 columns, throughput in MiB/s and speedups
// (marked "?" when their per-sample range crosses 1x), with a legend, and,
// unless -perf-plot-dir is empty, charts drawn with gonum.org/v1/plot
// (plot.go): per preset, the throughput of each side's batch calls with
// min-max whiskers and the speedups on a log scale. The summary and every
// chart say the CPU, the file system and how the reads met the page cache.
//
// With -perf-direct the V1 store is opened with Config.DirectIO and the
// floor preads with O_DIRECT, so that their reads time the device rather
// than the page cache; the old interface and every write still go through
// the page cache. Dirty pages are written back, untimed, before each direct
// read, and each scenario reports what share of the read bytes went direct:
// a read whose buffers are not aligned falls back to the page cache.
//
// # Serving
//
// The Serving scenario (labels "perf" and "serving", the last container of
// the comparison's Ordered container, so it runs after the seed's
// scenarios) drives the stores the way SGLang's cache controller does:
// seeded multi-turn conversations with a shared system prompt and
// hash-chained page keys; per request, on every TP rank, BatchExists in
// batches of 128 up to the first batch not all present, then fetches of 128
// pages up to the first batch not fully served, the hit count reduced with
// MIN across ranks; after prefill, the new pages backed up in batches of 128
// on a controller goroutine per writing rank, concurrently with the other
// clients' prefetches. MHA ranks each write their own files; for MLA rank 0
// writes and every rank reads. Stores are bounded below their working set,
// so they evict. Every page served is checked byte for byte against its
// key's stamp. It reports hit rates, prefetch and backup throughput, the
// latency of every batch call, and one "serving:" summary line per preset
// and interface, and draws the CDF of the fetch and backup latencies into
// -perf-plot-dir with the same plotting as the comparison's charts.
//
// The package is an ordinary package whose specs register at init; the root
// suite_test.go pulls it in with a blank import and calls CheckFlags before
// RunSpecs, so that a bad flag stops the run before any spec starts.
//
// # Flags
//
// Passed to the test binary after "--":
//
//	-perf-samples=N        samples per scenario after one warm-up (default 5)
//	-perf-presets=a,b      model presets (default seed,llama3-8b,deepseek-v3)
//	-interface=old|new|both
//	-perf-dir=DIR          an existing directory to run in (default: a temp dir)
//	-perf-plot-dir=DIR     where to draw the charts (default perf-report; empty: none)
//	-perf-direct           new and floor read with O_DIRECT (default off)
//	-serving-users=N       Serving: users (default 16)
//	-serving-turns=N       Serving: turns per conversation (default 4)
//	-serving-clients=N     Serving: concurrent clients (default 4)
//	-serving-capacity=F    Serving: MaxBytes, a fraction of the working set or a size (default 0.5)
//	-serving-duration=D    Serving: no request starts after D per preset and interface (default 6s)
//	-serving-mla-tp=N      Serving: TP ranks of an MLA preset (default 8)
package perf
