package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// daemonProc is the daemon child process.
type daemonProc struct {
	cmd     *exec.Cmd
	logPath string
	started time.Time     // just before the process was started
	done    chan struct{} // closed when it has exited and been waited for
}

// daemonEnv is the daemon's configuration: the run's server, objects and
// simulator, the run's accounts (account 0 owning the default Tag ID; in
// customer_list mode each with its OAuth app, and the run's secrets key),
// the batch flags, warn logs, no HTTP listener; every other variable at
// its default.
func (b *bench) daemonEnv() []string {
	vars := map[string]string{
		"CONNECTOR_NATS_URL":           b.url,
		"CONNECTOR_STREAM":             b.defs.stream.Name,
		"CONNECTOR_SUBJECTS":           strings.Join(b.defs.stream.Subjects, ","),
		"CONNECTOR_DURABLE":            b.defs.consumer.Durable,
		"CONNECTOR_DLQ_STREAM":         b.defs.dlq.Name,
		"CONNECTOR_PARKING_STREAM":     b.defs.parking.Name,
		"CONNECTOR_ACTIVATIONS_BUCKET": b.defs.activations.Bucket,
		"CONNECTOR_ORDER_BUCKET":       b.defs.order.Bucket,
		"CONNECTOR_STATE_BUCKET":       b.defs.states.Bucket,
		"CONNECTOR_PINTEREST_BASE_URL": b.sim.URL(),
		"CONNECTOR_DEFAULT_TAG_ID":     b.accounts[0].tagID,
		"CONNECTOR_BATCH_SIZE":         strconv.Itoa(b.o.batchSize),
		"CONNECTOR_BATCH_PERIOD":       b.o.batchPeriod.String(),
		"CONNECTOR_LOG_LEVEL":          "warn",
		"CONNECTOR_LISTEN_ADDR":        "",
	}
	names := make([]string, len(b.accounts))
	for i, a := range b.accounts {
		names[i] = a.name
		prefix := "CONNECTOR_ACCOUNT_" + strings.ToUpper(a.name)
		vars[prefix+"_AD_ACCOUNT_ID"] = a.adAccountID
		vars[prefix+"_TOKEN"] = a.token
		vars[prefix+"_TAG_IDS"] = a.tagID
		if b.o.lists() {
			vars[prefix+"_APP_ID"] = a.appID
			vars[prefix+"_APP_SECRET"] = a.appSecret
			vars[prefix+"_REFRESH_TOKEN"] = a.refreshToken
		}
	}
	if b.o.lists() {
		vars["CONNECTOR_SECRETS_KEY"] = b.secretsKey
	}
	vars["CONNECTOR_ACCOUNTS"] = strings.Join(names, ",")
	var env []string
	for _, kv := range os.Environ() {
		// An unknown CONNECTOR_* variable is fatal to the daemon, and a
		// known one would change what is measured: pass none of ours.
		if !strings.HasPrefix(strings.ToUpper(kv), "CONNECTOR_") {
			env = append(env, kv)
		}
	}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	return env
}

// startDaemon starts the daemon, its output going to daemon.log in the
// temp dir.
func (b *bench) startDaemon() (*daemonProc, error) {
	p := &daemonProc{logPath: filepath.Join(b.dir, "daemon.log"), done: make(chan struct{})}
	log, err := os.Create(p.logPath)
	if err != nil {
		return nil, err
	}
	p.cmd = exec.Command(b.daemonBin)
	p.cmd.Env = b.daemonEnv()
	p.cmd.Stdout, p.cmd.Stderr = log, log
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("starting the daemon: %w", err)
	}
	go func() {
		_ = p.cmd.Wait() // the exit status is read from cmd.ProcessState
		log.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *daemonProc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the daemon has exited.
func (p *daemonProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits for the exit; after limit it sends SIGKILL.
// It returns the exit code (-1 when killed by a signal).
func (p *daemonProc) stop(limit time.Duration) int {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
	return p.cmd.ProcessState.ExitCode()
}

// kill ends a daemon still running (an aborted run) and waits for it.
func (p *daemonProc) kill() {
	if !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// logTail is the end of the daemon's log, for error messages.
func (p *daemonProc) logTail() string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	const keep = 4 << 10
	if len(data) > keep {
		data = data[len(data)-keep:]
	}
	return string(bytes.TrimSpace(data))
}
