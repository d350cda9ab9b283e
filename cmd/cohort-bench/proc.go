package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of utime and stime in /proc/<pid>/stat:
// 1/sysconf(_SC_CLK_TCK) s, the kernel's USER_HZ, which is 100 on the
// Linux architectures Go supports.
const clockTick = 10 * time.Millisecond

// procSample is what /proc says of a running process.
type procSample struct {
	cpu    time.Duration // user + system time of all its threads so far
	hwmKiB int64         // VmHWM: its peak resident set size so far
}

// readProc samples a running process from /proc (Linux only).
func readProc(pid int) (procSample, error) {
	var s procSample
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The command name, field 2, is in parentheses and may hold spaces:
	// fields are counted after the last ')'. There, field 3 (state) is
	// rest[0], so utime (14) is rest[11] and stime (15) rest[12].
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	rest := strings.Fields(string(stat[i+1:]))
	if len(rest) < 13 {
		return s, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	utime, err1 := strconv.ParseInt(rest[11], 10, 64)
	stime, err2 := strconv.ParseInt(rest[12], 10, 64)
	if err1 != nil || err2 != nil {
		return s, fmt.Errorf("/proc/%d/stat: utime %q, stime %q", pid, rest[11], rest[12])
	}
	s.cpu = time.Duration(utime+stime) * clockTick
	s.hwmKiB, err = vmHWM(pid)
	return s, err
}

// vmHWM reads VmHWM (kB) from /proc/<pid>/status.
func vmHWM(pid int) (int64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmHWM", pid)
}

// mib converts KiB to MiB.
func mib(kib int64) float64 { return float64(kib) / 1024 }
