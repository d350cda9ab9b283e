package simulator

import (
	"net/http"
	"strings"
)

// access is what an operation needs: its token kind and scope, which is
// also its rate-limit window (the spec's x-ratelimit-category).
type access int

const (
	// accessEvents: a conversion token or an OAuth token with ads:write
	// (ads_conversions window).
	accessEvents access = iota
	// accessRead: an OAuth token with ads:read (ads_read window).
	accessRead
	// accessWrite: an OAuth token with ads:write (ads_write window).
	accessWrite
)

// operation is one method of a resource.
type operation struct {
	access access
	// serve answers the request; sub is the second path id (customer list
	// or audience) when the resource has one, f the fault that applied
	// without answering (for Fault.RejectEvents).
	serve func(s *Simulator, w http.ResponseWriter, r *http.Request, a *account, sub string, f Fault)
}

// resource is a path below /v5/ad_accounts/{ad_account_id}/.
type resource struct {
	subName string // name of the path's second id, "" when it has none
	allow   string // the Allow header of a 405
	ops     map[string]operation
}

func newResource(subName string, ops map[string]operation) *resource {
	allow := make([]string, 0, len(ops))
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPatch} {
		if _, ok := ops[m]; ok {
			allow = append(allow, m)
		}
	}
	return &resource{subName: subName, allow: strings.Join(allow, ", "), ops: ops}
}

// resources maps a path below the ad account ("{}" standing for the second
// id) to its operations.
var resources = map[string]*resource{
	"events": newResource("", map[string]operation{
		http.MethodPost: {accessEvents, (*Simulator).serveEvents},
	}),
	"customer_lists": newResource("", map[string]operation{
		http.MethodGet:  {accessRead, (*Simulator).serveListLists},
		http.MethodPost: {accessWrite, (*Simulator).serveCreateList},
	}),
	"customer_lists/{}": newResource("customer_list_id", map[string]operation{
		http.MethodGet:   {accessRead, (*Simulator).serveGetList},
		http.MethodPatch: {accessWrite, (*Simulator).serveUpdateList},
	}),
	"audiences": newResource("", map[string]operation{
		http.MethodGet:  {accessRead, (*Simulator).serveListAudiences},
		http.MethodPost: {accessWrite, (*Simulator).serveCreateAudience},
	}),
	"audiences/{}": newResource("audience_id", map[string]operation{
		http.MethodGet:   {accessRead, (*Simulator).serveGetAudience},
		http.MethodPatch: {accessWrite, (*Simulator).serveUpdateAudience},
	}),
	"conversion_eqs": newResource("", map[string]operation{
		http.MethodGet: {accessRead, (*Simulator).serveEQS},
	}),
	"conversion_tags": newResource("", map[string]operation{
		http.MethodGet: {accessRead, (*Simulator).serveTags},
	}),
}

// findResource maps the path below the ad account to its resource and
// second id; nil when there is none.
func findResource(rest string) (*resource, string) {
	first, sub, two := strings.Cut(rest, "/")
	if !two {
		return resources[first], ""
	}
	if strings.Contains(sub, "/") {
		return nil, ""
	}
	return resources[first+"/{}"], sub
}

// allowed reports whether the Authorization header grants acc on a.
func (s *Simulator) allowed(a *account, header string, acc access) bool {
	const scheme = "Bearer "
	if len(header) <= len(scheme) || !strings.EqualFold(header[:len(scheme)], scheme) {
		return false
	}
	tok := header[len(scheme):]
	if acc == accessEvents {
		if ct := a.token.Load(); ct != nil && *ct != "" && tok == *ct {
			return true
		}
	}
	scope := scopeWrite
	if acc == accessRead {
		scope = scopeRead
	}
	return s.oauthAllows(tok, a.id, scope)
}

// window is the rate-limit window of acc.
func (a *account) window(acc access) *window {
	switch acc {
	case accessRead:
		return &a.readsWindow
	case accessWrite:
		return &a.writesWindow
	}
	return &a.eventsWindow
}
