package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// version is the release this binary is, when the build says so:
// go build -ldflags "-X main.version=v1.2.3". Empty: the module version of
// the build info ("(devel)" for a build from a checkout).
var version = ""

// build identifies this binary: its version, the VCS revision it was built
// from ("-dirty" when the tree had uncommitted changes; "unknown" when the
// build carried none, e.g. -buildvcs=false) and the Go release.
type build struct {
	Version, Revision, GoVersion string
}

// thisBuild reads the build of the running binary.
func thisBuild() build {
	b := build{Version: version, Revision: "unknown", GoVersion: runtime.Version()}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	if b.Version == "" {
		b.Version = info.Main.Version
	}
	dirty := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && b.Revision != "unknown" {
		b.Revision += "-dirty"
	}
	if b.Version == "" {
		b.Version = "(devel)"
	}
	return b
}

// String is the --version line.
func (b build) String() string {
	return fmt.Sprintf("cohort-connector %s (revision %s, %s)", b.Version, b.Revision, b.GoVersion)
}

// MarshalZerologObject puts the build in a log line.
func (b build) MarshalZerologObject(e *zerolog.Event) {
	e.Str("version", b.Version).Str("revision", b.Revision).Str("go_version", b.GoVersion)
}

// register adds cohort_connector_build_info to reg: always 1, the build
// in its labels, as Prometheus exporters do.
func (b build) register(reg prometheus.Registerer) {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "cohort_connector_build_info",
		Help:        "Always 1: the version, VCS revision and Go release of the running daemon, in its labels.",
		ConstLabels: prometheus.Labels{"version": b.Version, "revision": b.Revision, "go_version": b.GoVersion},
	})
	g.Set(1)
	reg.MustRegister(g)
}
