// Package cluster holds the specs of a store directory shared across nodes:
// every node is its own OS process, with its own hostcache.Pool and
// hicachefile.Store, and the nodes share nothing but the file system.
//
// With -cluster-dirs=DIR,DIR[,DIR...] each DIR is the same directory of one
// shared volume (NFS, CephFS, Lustre, GlusterFS, a FUSE client) as mounted
// where one node runs; scripts/glusterfs-up.sh mounts a two-brick replicated
// GlusterFS volume twice on one host and prints such a value. Without the
// flag, three node processes share one local temp directory, and the report
// says "single node: local processes". The specs are Serial and labelled
// "cluster"; a run ends with a report entry holding the line
//
//	cluster: <nodes> nodes, <pages> pages checked, <wrong> wrong, visibility p50 <dur> p99 <dur>
//
// where pages checked counts every page a node was served and checked, and
// visibility is the time from a BatchSetV1 call returning on one node to the
// first BatchGetV1 hit on another, over every V1 page of the cross-node spec
// (old-format pages, found by name, are reported beside it).
//
// # Nodes
//
// A node is the test binary run again with HICACHE_CLUSTER_NODE set: this
// package's init sees it and runs the node's main loop instead of the suite,
// so the root suite needs nothing but the blank import. The parent sends one
// JSON request a line on the node's stdin; the node answers on stdout with
// events and a final reply. The parent stamps every line with its own clock
// as it arrives, so a latency never mixes two clocks.
//
// Every page is stamped with its writer, TP rank and generation, and its
// bytes derive from the stamp, the key, the model and the rank, so a node
// checks every page it is served without being told who wrote it.
//
// # Flags
//
// Passed to the test binary after "--":
//
//	-cluster-dirs=DIR,DIR[,DIR...]  one node per DIR (default: 3 local processes)
//	-cluster-duration=D             the concurrent-writers spec, at least 20s (default 20s)
package cluster
