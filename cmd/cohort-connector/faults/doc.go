// Package faults is the fault-injection suite of the cohort-connector
// daemon. It has no code of its own: its tests build the real binary, run it
// as a subprocess against an embedded JetStream server and the Pinterest
// simulator (both in the test process), inject faults (SIGKILL, SIGTERM,
// Pinterest 503/429/401/hangs, a NATS server restart, poison messages) and
// check, against the simulator's record, that no membership was lost and
// that no exit overtook its enter.
//
//	go test -race -count=1 ./cmd/cohort-connector/faults/                       # CI sizes, see below
//	go test -count=1 -timeout 60m ./cmd/cohort-connector/faults/ -faults.full   # full sizes
//
// CI sizes take about 100s for rows 1–9 (2 cores); the rows that combine
// faults (L1–L7, combined_test.go: parking with an unknown Tag ID, two
// failing accounts, restarts, crashes at the last delivery, a DLQ refusing
// writes, deleted streams and consumers) add about 50s on a daemon that
// passes them, and each waits up to its bound (30–60s) on one that does not.
// The customer_list rows (C1–C5, lists_test.go) add about 40s.
//
// Its standard data give each user an enter and, later in the publish
// order, an exit; besides losses it counts order violations: exits whose
// first arrival at an ad account preceded their enter's there.
//
// A table (scenario | published | delivered | lost | duplicates | order |
// DLQ | time) is printed after the tests; go test shows a passing package's
// output only with -v (or when run from this directory), so it is also
// written to the file named by -faults.report when set. -faults.seed replays
// the random fault moments; FAULTS_DAEMON_LOG_LEVEL=debug runs the daemon at
// that level and prints its log tail for every scenario.
package faults
