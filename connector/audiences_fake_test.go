package connector_test

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cohort-connector/cohort-connector/destinations"
)

// fakeAudienceAPI models Pinterest's audience endpoints strictly: ids are
// assigned by the API, objects are kept per ad account, a rule must be
// valid for its type (and refer to objects of the same account), and
// every creation is counted. Unknown accounts are 403, unknown ids 404.
type fakeAudienceAPI struct {
	mu        sync.Mutex
	nextID    int
	accounts  map[string]*fakeAccount
	creations int // audiences and customer lists created
	lists     int // ListAudiences calls
	eqs       map[string]string

	// onCreate, when set, runs (unlocked) before an audience is created.
	onCreate func()
}

type fakeAccount struct {
	audiences []destinations.Audience
	lists     []destinations.CustomerList
}

func newFakeAudienceAPI(accounts ...string) *fakeAudienceAPI {
	f := &fakeAudienceAPI{nextID: 2542620639000, accounts: map[string]*fakeAccount{}, eqs: map[string]string{}}
	for _, a := range accounts {
		f.accounts[a] = &fakeAccount{}
	}
	return f
}

var _ destinations.AudienceAPI = (*fakeAudienceAPI)(nil)

var digits = regexp.MustCompile(`^\d+$`)

func notFound(what string) error {
	return &destinations.Error{Reason: destinations.ReasonNotFound, StatusCode: 404, Message: what + " not found"}
}

func badInput(format string, args ...any) error {
	return &destinations.Error{Reason: destinations.ReasonBadInput, StatusCode: 400, Message: fmt.Sprintf(format, args...)}
}

// account returns the account (f.mu held).
func (f *fakeAudienceAPI) account(id string) (*fakeAccount, error) {
	a, ok := f.accounts[id]
	if !ok {
		return nil, &destinations.Error{Reason: destinations.ReasonAuth, StatusCode: 403, Message: "no access to ad account " + id}
	}
	return a, nil
}

func (f *fakeAudienceAPI) newID() string {
	f.nextID++
	return strconv.Itoa(f.nextID)
}

func (f *fakeAudienceAPI) ListAudiences(ctx context.Context, adAccountID string) ([]destinations.Audience, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	a, err := f.account(adAccountID)
	if err != nil {
		return nil, err
	}
	return slices.Clone(a.audiences), nil
}

func (f *fakeAudienceAPI) CreateAudience(ctx context.Context, adAccountID string, au destinations.Audience) (destinations.Audience, error) {
	if f.onCreate != nil {
		f.onCreate()
	}
	if err := ctx.Err(); err != nil {
		return destinations.Audience{}, &destinations.Error{Reason: destinations.ReasonTimeout, Err: err}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	a, err := f.account(adAccountID)
	if err != nil {
		return destinations.Audience{}, err
	}
	if au.Name == "" {
		return destinations.Audience{}, badInput("name is required")
	}
	if err := f.checkRule(a, au); err != nil {
		return destinations.Audience{}, err
	}
	au.ID, au.Status, au.Size, au.SizeKnown = f.newID(), destinations.AudienceInitializing, 0, false
	a.audiences = append(a.audiences, au)
	f.creations++
	return au, nil
}

// checkRule applies the spec's rule constraints per audience type.
func (f *fakeAudienceAPI) checkRule(a *fakeAccount, au destinations.Audience) error {
	r := au.Rule
	switch au.Type {
	case destinations.AudienceVisitor:
		if !digits.MatchString(r.VisitorSourceID) || r.RetentionDays < 1 || r.RetentionDays > 540 {
			return badInput("VISITOR rule: visitor_source_id digits, retention_days 1-540")
		}
	case destinations.AudienceCustomerList:
		if !slices.ContainsFunc(a.lists, func(l destinations.CustomerList) bool { return l.ID == r.CustomerListID }) {
			return badInput("customer_list_id %q: no such customer list in the account", r.CustomerListID)
		}
	case destinations.AudienceActalike:
		if !slices.Contains([]string{"US", "CA", "GB"}, r.Country) || r.Percentage < 1 || r.Percentage > 10 || len(r.SeedIDs) == 0 {
			return badInput("ACTALIKE rule: country US|CA|GB, percentage 1-10, seed_id")
		}
		for _, id := range r.SeedIDs {
			if _, ok := f.find(a, id); !ok {
				return badInput("seed_id %s: no such audience in the account", id)
			}
		}
	default:
		return badInput("audience_type %q", au.Type)
	}
	return nil
}

func (f *fakeAudienceAPI) find(a *fakeAccount, id string) (int, bool) {
	i := slices.IndexFunc(a.audiences, func(au destinations.Audience) bool { return au.ID == id })
	return i, i >= 0
}

func (f *fakeAudienceAPI) GetAudience(ctx context.Context, adAccountID, audienceID string) (destinations.Audience, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, err := f.account(adAccountID)
	if err != nil {
		return destinations.Audience{}, err
	}
	i, ok := f.find(a, audienceID)
	if !ok {
		return destinations.Audience{}, notFound("audience " + audienceID)
	}
	return a.audiences[i], nil
}

func (f *fakeAudienceAPI) ListCustomerLists(ctx context.Context, adAccountID string) ([]destinations.CustomerList, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, err := f.account(adAccountID)
	if err != nil {
		return nil, err
	}
	return slices.Clone(a.lists), nil
}

func (f *fakeAudienceAPI) CreateCustomerList(ctx context.Context, adAccountID, name string) (destinations.CustomerList, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, err := f.account(adAccountID)
	if err != nil {
		return destinations.CustomerList{}, err
	}
	if name == "" {
		return destinations.CustomerList{}, badInput("name is required")
	}
	cl := destinations.CustomerList{ID: f.newID(), Name: name, Status: "PROCESSING"}
	a.lists = append(a.lists, cl)
	f.creations++
	return cl, nil
}

func (f *fakeAudienceAPI) EventQuality(ctx context.Context, adAccountID string) (destinations.EventQuality, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.account(adAccountID); err != nil {
		return destinations.EventQuality{}, err
	}
	return destinations.EventQuality{OverallStatus: f.eqs[adAccountID]}, nil
}

// set changes an audience's status and size, as Pinterest does a day later.
func (f *fakeAudienceAPI) set(adAccountID, audienceID, status string, size int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.accounts[adAccountID]
	i, _ := f.find(a, audienceID)
	a.audiences[i].Status, a.audiences[i].Size, a.audiences[i].SizeKnown = status, size, true
}

// audiences returns the account's audiences.
func (f *fakeAudienceAPI) audiences(adAccountID string) []destinations.Audience {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.accounts[adAccountID].audiences)
}

func (f *fakeAudienceAPI) counts() (creations, lists int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.creations, f.lists
}

// lostResponse is the fake whose CreateAudience creates the audience but
// loses the answer: a crash between the creation and its record.
type lostResponse struct{ *fakeAudienceAPI }

func (l lostResponse) CreateAudience(ctx context.Context, adAccountID string, au destinations.Audience) (destinations.Audience, error) {
	if _, err := l.fakeAudienceAPI.CreateAudience(ctx, adAccountID, au); err != nil {
		return destinations.Audience{}, err
	}
	return destinations.Audience{}, &destinations.Error{Reason: destinations.ReasonTimeout, Message: "connection reset after the request was sent"}
}

// staleKV returns, for the first Get of key, the entry as it was before
// meanwhile ran: a write by another replica between a read and its
// compare-and-set.
type staleKV struct {
	jetstream.KeyValue
	key       string
	once      sync.Once
	meanwhile func()
}

func (s *staleKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	e, err := s.KeyValue.Get(ctx, key)
	if key == s.key {
		s.once.Do(s.meanwhile)
	}
	return e, err
}
