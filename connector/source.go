package connector

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The source feeds the connector's loop from every consumer it reads: the
// main durable consumer and one parking consumer per ad account. Each
// consumer's messages are handed, by nats.go's callback for it, to one
// channel, so that one loop routes and settles everything. (A callback, not
// an iterator: the iterator's fixed buffer overflows after a reconnect, and
// a message dropped in the client is one the order book never saw.) A pump
// goroutine per consumer watches its lifecycle.
//
// A consumer deleted under the connector is noticed (the pull ends with
// "consumer deleted", or the periodic check finds it gone), reported by
// Health until it is back, and created again: from where it stood (its ack
// floor when last seen) if its stream is the same, from the start if the
// stream itself was deleted and created again. A deleted input stream is
// created again (empty: what it held is gone, which is logged at error
// level); so are the dead-letter and parking streams and the order bucket.

// inbound is one message handed from a pump to the loop.
type inbound struct {
	msg       jetstream.Msg
	parkedFor string // "" for the main consumer
}

type source struct {
	c        *Connector
	feed     chan inbound
	stop     chan struct{} // closed (once) when the connector stops fetching
	stopOnce sync.Once

	pumps []*pump
	wg    sync.WaitGroup

	mu       sync.Mutex
	err      error             // why the source stopped by itself (connection closed)
	problems map[string]string // check name → what is wrong
}

// pump reads one consumer.
type pump struct {
	name      string // health check name, e.g. "consumer COHORTS/cohort-connector"
	parkedFor string
	// open looks the consumer up, creating it (again) if it is missing.
	open func(ctx context.Context) (jetstream.Consumer, error)

	mu       sync.Mutex
	cons     jetstream.Consumer
	cc       jetstream.ConsumeContext
	gone     chan struct{} // signalled when the consumer is found deleted
	ackFloor uint64        // stream sequence below which everything was acked, when last checked
	created  time.Time     // creation time of the consumer's stream
}

func (c *Connector) newSource() *source {
	return &source{c: c, feed: make(chan inbound, 256), stop: make(chan struct{}), problems: map[string]string{}}
}

// start opens every consumer and starts the pumps and the periodic check.
// An error opening a consumer at start is returned (the caller stops).
func (s *source) start(ctx context.Context) error {
	c := s.c
	main := &pump{name: "consumer " + c.o.Topology.Stream + "/" + c.o.Topology.Durable}
	main.cons = c.o.Consumer
	main.ackFloor = c.o.Consumer.CachedInfo().AckFloor.Stream
	main.open = func(ctx context.Context) (jetstream.Consumer, error) { return s.reopenMain(ctx, main) }
	if st, err := c.o.JS.Stream(ctx, c.o.Topology.Stream); err == nil {
		main.created = st.CachedInfo().Created
	}
	s.pumps = append(s.pumps, main)
	if c.o.Topology.ParkingStream != "" {
		for _, account := range c.accounts {
			p := &pump{name: "consumer " + c.o.Topology.ParkingStream + "/" + c.o.Topology.ParkingConsumerConfig(account).Durable, parkedFor: account}
			p.open = func(ctx context.Context) (jetstream.Consumer, error) { return s.reopenParked(ctx, p) }
			cons, err := c.o.JS.CreateOrUpdateConsumer(ctx, c.o.Topology.ParkingStream, c.o.Topology.ParkingConsumerConfig(account))
			if err != nil {
				return fmt.Errorf("parking consumer of ad account %s: %w", account, err)
			}
			p.cons, p.ackFloor = cons, cons.CachedInfo().AckFloor.Stream
			if st, err := c.o.JS.Stream(ctx, c.o.Topology.ParkingStream); err == nil {
				p.created = st.CachedInfo().Created
			}
			s.pumps = append(s.pumps, p)
		}
	}
	for _, p := range s.pumps {
		if err := s.consume(p, p.cons); err != nil {
			s.abort()
			return fmt.Errorf("consuming %s: %w", p.name, err)
		}
	}
	for _, p := range s.pumps {
		s.wg.Add(1)
		go s.run(p)
	}
	s.wg.Add(1)
	go s.check()
	go func() {
		s.wg.Wait()
		close(s.feed)
	}()
	return nil
}

// abort stops the consumers started so far when start fails: what they
// fetched is dropped (JetStream redelivers it after AckWait), and the feed
// is emptied until each has stopped, so no callback is left blocked on it.
func (s *source) abort() {
	s.stopOnce.Do(func() { close(s.stop) })
	for _, p := range s.pumps {
		if p.cc != nil {
			p.cc.Stop()
		}
	}
	for _, p := range s.pumps {
		if p.cc == nil {
			continue
		}
		for stopped := false; !stopped; {
			select {
			case <-s.feed:
			case <-p.cc.Closed():
				stopped = true
			}
		}
	}
}

// consume starts the delivery of cons's messages into the feed.
func (s *source) consume(p *pump, cons jetstream.Consumer) error {
	gone := make(chan struct{}, 1)
	cc, err := cons.Consume(func(msg jetstream.Msg) { s.feed <- inbound{msg: msg, parkedFor: p.parkedFor} },
		jetstream.PullMaxMessages(max(2*s.c.o.BatchSize, 256)),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			switch {
			case errors.Is(err, jetstream.ErrConsumerDeleted), errors.Is(err, jetstream.ErrConsumerNotFound),
				errors.Is(err, jetstream.ErrBadRequest):
				select {
				case gone <- struct{}{}:
				default:
				}
			case errors.Is(err, jetstream.ErrNoHeartbeat):
				// The pulls are re-issued by nats.go; the periodic check
				// finds a consumer that is really gone.
			default:
				s.c.o.Logger.Warn().Err(err).Str("consumer", p.name).Msg("consuming: transient error")
			}
		}))
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.cons, p.cc, p.gone = cons, cc, gone
	p.mu.Unlock()
	return nil
}

// stopFetching makes every consumer drain (the messages it has already
// received are still fed) and stop; the feed is closed once they have.
func (s *source) stopFetching() {
	s.stopOnce.Do(func() {
		close(s.stop)
		for _, p := range s.pumps {
			p.mu.Lock()
			if p.cc != nil {
				p.cc.Drain()
			}
			p.mu.Unlock()
		}
	})
}

func (s *source) stopped() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// run watches p until the source stops: a consumer found deleted is
// stopped and opened again; one closed under it (the connection closed)
// stops the source.
func (s *source) run(p *pump) {
	defer s.wg.Done()
	for {
		p.mu.Lock()
		cc, gone := p.cc, p.gone
		p.mu.Unlock()
		select {
		case <-cc.Closed():
		case <-gone:
			cc.Stop()
			<-cc.Closed()
		}
		if s.stopped() {
			return
		}
		if s.c.o.JS.Conn().IsClosed() {
			s.fail(fmt.Errorf("consuming %s: %w", p.name, nats.ErrConnectionClosed))
			return
		}
		// The consumer is gone: report it, open it again, resume.
		if !s.reopen(p) {
			return
		}
	}
}

// reopen opens p's consumer again, retrying with a growing delay until it
// succeeds or the source stops; it reports whether p runs again.
func (s *source) reopen(p *pump) bool {
	log := s.c.o.Logger
	s.setProblem(p.name, "deleted: being created again")
	log.Error().Str("consumer", p.name).Msg("JetStream consumer deleted or unreachable: creating it again")
	delay := 100 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cons, err := p.open(ctx)
		cancel()
		if err == nil {
			if s.stopped() {
				return false
			}
			if err = s.consume(p, cons); err == nil {
				if s.stopped() { // raced with stopFetching, which drained the old one
					p.cc.Drain()
				}
				s.setProblem(p.name, "")
				log.Info().Str("consumer", p.name).Msg("JetStream consumer back: consuming again")
				return true
			}
		}
		s.setProblem(p.name, err.Error())
		log.Warn().Err(err).Str("consumer", p.name).Dur("retry_in", delay).Msg("creating the consumer again failed")
		select {
		case <-s.stop:
			return false
		case <-time.After(delay):
			delay = min(2*delay, 10*time.Second)
		}
	}
}

// reopenMain looks the main consumer up, or creates it again: from its last
// known ack floor on the same stream, from the start of a stream that was
// created anew (or that this call had to create).
func (s *source) reopenMain(ctx context.Context, p *pump) (jetstream.Consumer, error) {
	t := s.c.o.Topology
	st, err := s.streamCreatedIfMissing(ctx, t.StreamConfig())
	if err != nil {
		return nil, err
	}
	if cons, err := st.Consumer(ctx, t.Durable); err == nil {
		return cons, nil
	} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, err
	}
	cfg := s.c.o.Consumer.CachedInfo().Config
	p.mu.Lock()
	cfg.DeliverPolicy, cfg.OptStartSeq = resumePolicy(p, st.CachedInfo().Created)
	p.mu.Unlock()
	return st.CreateConsumer(ctx, cfg)
}

// reopenParked does the same for an account's parking consumer.
func (s *source) reopenParked(ctx context.Context, p *pump) (jetstream.Consumer, error) {
	t := s.c.o.Topology
	st, err := s.streamCreatedIfMissing(ctx, t.ParkingStreamConfig())
	if err != nil {
		return nil, err
	}
	cfg := t.ParkingConsumerConfig(p.parkedFor)
	if cons, err := st.Consumer(ctx, cfg.Durable); err == nil {
		return cons, nil
	} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, err
	}
	p.mu.Lock()
	cfg.DeliverPolicy, cfg.OptStartSeq = resumePolicy(p, st.CachedInfo().Created)
	p.mu.Unlock()
	return st.CreateConsumer(ctx, cfg)
}

// resumePolicy is where a consumer created again starts: after its last
// known ack floor if its stream is the one it had, else from the start.
// p.mu must be held.
func resumePolicy(p *pump, streamCreated time.Time) (jetstream.DeliverPolicy, uint64) {
	if !p.created.Equal(streamCreated) || p.ackFloor == 0 {
		p.created, p.ackFloor = streamCreated, 0
		return jetstream.DeliverAllPolicy, 0
	}
	return jetstream.DeliverByStartSequencePolicy, p.ackFloor + 1
}

// streamCreatedIfMissing returns the stream of cfg, creating it if it is
// missing (logged at error level: whatever it held is gone).
func (s *source) streamCreatedIfMissing(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	st, err := s.c.o.JS.Stream(ctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if st, err = s.c.o.JS.CreateStream(ctx, cfg); err == nil {
			s.c.o.Logger.Error().Str("stream", cfg.Name).Msg("JetStream stream was deleted: created again, empty (what it held is gone)")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("opening stream %s: %w", cfg.Name, err)
	}
	return st, nil
}

// check looks at every consumer and object the connector uses every
// CheckInterval: it records each consumer's ack floor, stops the iterator of
// a consumer that is gone (its pump then opens it again), and creates again
// the dead-letter stream, parking stream and order bucket if they are gone.
func (s *source) check() {
	defer s.wg.Done()
	tick := time.NewTicker(s.c.o.CheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.c.o.CheckInterval)
		for _, p := range s.pumps {
			s.checkConsumer(ctx, p)
		}
		s.checkObjects(ctx)
		cancel()
	}
}

func (s *source) checkConsumer(ctx context.Context, p *pump) {
	p.mu.Lock()
	cons, gone := p.cons, p.gone
	p.mu.Unlock()
	if cons == nil {
		return
	}
	ci, err := cons.Info(ctx)
	switch {
	case err == nil:
		p.mu.Lock()
		p.ackFloor = ci.AckFloor.Stream
		p.mu.Unlock()
	case errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound):
		select {
		case gone <- struct{}{}: // the pump opens it again
		default:
		}
	}
}

func (s *source) checkObjects(ctx context.Context) {
	t := s.c.o.Topology
	streams := []jetstream.StreamConfig{t.DLQStreamConfig()}
	if t.ParkingStream != "" {
		streams = append(streams, t.ParkingStreamConfig())
	}
	for _, cfg := range streams {
		_, err := s.streamCreatedIfMissing(ctx, cfg)
		s.setProblem("stream "+cfg.Name, errText(err))
	}
	if t.OrderBucket != "" {
		_, err := s.c.o.JS.KeyValue(ctx, t.OrderBucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			if _, err = s.c.o.JS.CreateKeyValue(ctx, t.OrderBucketConfig()); err == nil {
				s.c.o.Logger.Error().Str("bucket", t.OrderBucket).Msg("order bucket was deleted: created again (order records it held are gone)")
			}
		}
		s.setProblem("kv "+t.OrderBucket, errText(err))
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func (s *source) setProblem(name, problem string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if problem == "" {
		delete(s.problems, name)
		return
	}
	s.problems[name] = problem
}

// fail records why the source stops by itself and stops it.
func (s *source) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	go s.stopFetching()
}

func (s *source) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}
