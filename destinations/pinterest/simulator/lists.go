package simulator

import (
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MaxRecordsPerRequest is the most records one customer list request may
// carry (an assumption: the spec gives no maximum).
const MaxRecordsPerRequest = 100_000

// MinAudienceSize is the number of known users below which an audience or
// customer list is TOO_SMALL.
const MinAudienceSize = 100

// customerList is one customer list of an account.
type customerList struct {
	id, name                string
	members                 map[string]struct{}
	known                   int // members that are known users
	added, removed, batches int
	created, updated        time.Time
	// removedFirst: records whose first operation on the list was a
	// REMOVE (an exit that reached the list before its enter's ADD).
	removedFirst map[string]struct{}
	seen         map[string]struct{} // records any operation has named
}

// CustomerListInfo is a customer list as the simulator holds it.
type CustomerListInfo struct {
	ID, Name                      string
	Members, Known                int
	Uploaded, Removed, NumBatches int
	CreatedAt, UpdatedAt          time.Time
}

// customerListCreate is CustomerListRequest.
type customerListCreate struct {
	ListType *string `json:"list_type"`
	Name     *string `json:"name"`
	Records  *string `json:"records"`
}

// customerListUpdate is CustomerListUpdateRequest.
type customerListUpdate struct {
	OperationType *string `json:"operation_type"`
	Records       *string `json:"records"`
}

// customerListAnswer is the spec's CustomerList.
type customerListAnswer struct {
	AdAccountID           string         `json:"ad_account_id"`
	CreatedTime           int64          `json:"created_time"`
	Exceptions            map[string]any `json:"exceptions"`
	ID                    string         `json:"id"`
	Name                  string         `json:"name"`
	NumBatches            int            `json:"num_batches"`
	NumRemovedUserRecords int            `json:"num_removed_user_records"`
	NumUploadedRecords    int            `json:"num_uploaded_user_records"`
	Status                string         `json:"status"`
	Type                  string         `json:"type"`
	UpdatedTime           int64          `json:"updated_time"`
}

// listTypes is the spec's UserListType.
var listTypes = map[string]bool{
	"EMAIL": true, "IDFA": true, "MAID": true, "LR_ID": true, "DLX_ID": true, "HASHED_PINNER_ID": true,
}

// badRequest counts and answers a 400 code 4196 "The request was invalid.".
func badRequest(w http.ResponseWriter, a *account, msg string) {
	a.badRequest.Add(1)
	writeError(w, http.StatusBadRequest, CodeInvalidRequest, "The request was invalid. "+msg)
}

// notFound answers a missing customer list or audience.
func notFound(w http.ResponseWriter, what string) {
	writeError(w, http.StatusNotFound, CodeObjectNotFound, what+" not found.")
}

// serveCreateList answers POST customer_lists: the list is created with
// the records (one batch).
func (s *Simulator) serveCreateList(w http.ResponseWriter, r *http.Request, a *account, _ string, _ Fault) {
	var req customerListCreate
	if !decodeBody(w, r, a, &req) {
		return
	}
	switch {
	case req.Name == nil || strings.TrimSpace(*req.Name) == "":
		badRequest(w, a, "name is required.")
		return
	case req.Records == nil:
		badRequest(w, a, "records is required.")
		return
	case req.ListType != nil && !listTypes[*req.ListType]:
		badRequest(w, a, "list_type "+strconv.Quote(*req.ListType)+" is not a UserListType.")
		return
	}
	recs, msg := s.parseRecords(*req.Records)
	if msg != "" {
		badRequest(w, a, msg)
		return
	}
	now := s.now()
	l := &customerList{id: s.newID(), name: *req.Name, members: make(map[string]struct{}), created: now,
		removedFirst: make(map[string]struct{}), seen: make(map[string]struct{})}
	a.mu.Lock()
	l.apply(true, recs, now)
	a.lists[l.id] = l
	ans := s.listAnswer(a, l, now)
	a.mu.Unlock()
	a.accepted.Add(1)
	writeJSON(w, http.StatusOK, ans)
}

// serveUpdateList answers PATCH customer_lists/{id}: ADD inserts each
// record into the member set, REMOVE deletes it.
func (s *Simulator) serveUpdateList(w http.ResponseWriter, r *http.Request, a *account, listID string, _ Fault) {
	var req customerListUpdate
	if !decodeBody(w, r, a, &req) {
		return
	}
	if req.OperationType == nil || req.Records == nil {
		badRequest(w, a, "operation_type and records are required.")
		return
	}
	op := *req.OperationType
	if op != "ADD" && op != "REMOVE" {
		badRequest(w, a, "operation_type must be ADD or REMOVE.")
		return
	}
	recs, msg := s.parseRecords(*req.Records)
	if msg == "" && len(recs) == 0 {
		msg = "records must not be empty."
	}
	if msg != "" {
		badRequest(w, a, msg)
		return
	}
	now := s.now()
	a.mu.Lock()
	l := a.lists[listID]
	if l == nil {
		a.mu.Unlock()
		notFound(w, "Customer list")
		return
	}
	l.apply(op == "ADD", recs, now)
	ans := s.listAnswer(a, l, now)
	a.mu.Unlock()
	if hook := s.listHook.Load(); hook != nil {
		for _, rec := range recs {
			(*hook)(a.id, listID, op == "ADD", rec.value, now)
		}
	}
	a.accepted.Add(1)
	a.listUpdates.Add(1)
	writeJSON(w, http.StatusOK, ans)
}

// serveGetList answers GET customer_lists/{id}.
func (s *Simulator) serveGetList(w http.ResponseWriter, _ *http.Request, a *account, listID string, _ Fault) {
	a.mu.Lock()
	l := a.lists[listID]
	var ans customerListAnswer
	if l != nil {
		ans = s.listAnswer(a, l, s.now())
	}
	a.mu.Unlock()
	if l == nil {
		notFound(w, "Customer list")
		return
	}
	a.accepted.Add(1)
	writeJSON(w, http.StatusOK, ans)
}

// serveListLists answers GET customer_lists.
func (s *Simulator) serveListLists(w http.ResponseWriter, r *http.Request, a *account, _ string, _ Fault) {
	now := s.now()
	a.mu.Lock()
	items := make([]customerListAnswer, 0, len(a.lists))
	for _, l := range a.lists {
		items = append(items, s.listAnswer(a, l, now))
	}
	a.mu.Unlock()
	pageOf(w, r, a, items, func(l *customerListAnswer) string { return l.ID })
}

// apply adds or removes recs as one batch (a.mu held). The counters grow
// with every record, repeats and absent ones included, as the spec says.
func (l *customerList) apply(add bool, recs []record, now time.Time) {
	for _, rec := range recs {
		if _, ok := l.seen[rec.value]; !ok {
			l.seen[rec.value] = struct{}{}
			if !add {
				l.removedFirst[rec.value] = struct{}{}
			}
		}
		_, in := l.members[rec.value]
		switch {
		case add && !in:
			l.members[rec.value] = struct{}{}
			if rec.known {
				l.known++
			}
		case !add && in:
			delete(l.members, rec.value)
			if rec.known {
				l.known--
			}
		}
	}
	if add {
		l.added += len(recs)
	} else {
		l.removed += len(recs)
	}
	l.batches++
	l.updated = now
}

// listAnswer is l as the API shows it (a.mu held). Its status is
// PROCESSING for AudienceDelay after each update, then READY or TOO_SMALL.
func (s *Simulator) listAnswer(a *account, l *customerList, now time.Time) customerListAnswer {
	status := "READY"
	switch {
	case now.Before(l.updated.Add(s.audienceDelay)):
		status = "PROCESSING"
	case l.known < MinAudienceSize:
		status = "TOO_SMALL"
	}
	return customerListAnswer{
		AdAccountID: a.id, CreatedTime: l.created.Unix(), Exceptions: map[string]any{},
		ID: l.id, Name: l.name, NumBatches: l.batches,
		NumRemovedUserRecords: l.removed, NumUploadedRecords: l.added,
		Status: status, Type: "customerlist", UpdatedTime: l.updated.Unix(),
	}
}

// record is one valid customer list record and whether it is a known user.
type record struct {
	value string
	known bool
}

// parseRecords splits comma-separated records, skipping empty ones and
// trimming spaces; msg names the first invalid record.
func (s *Simulator) parseRecords(v string) (recs []record, msg string) {
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if len(recs) == MaxRecordsPerRequest {
			return nil, "records must hold at most " + strconv.Itoa(MaxRecordsPerRequest) + " records."
		}
		var id string
		switch {
		case isLowerHex(f, 64), isLowerHex(f, 40), isLowerHex(f, 32):
			id = f
		case isLowerEmail(f):
			id = sha256Hex(f)
		default:
			if len(f) > 80 {
				f = f[:80] + "..."
			}
			return nil, "records: invalid record " + strconv.Quote(f) +
				" (must be a lowercase email, or lowercase SHA-256, SHA1 or MD5 hex)."
		}
		recs = append(recs, record{value: f, known: s.Known(id)})
	}
	return recs, ""
}

func isLowerHex(v string, n int) bool {
	if len(v) != n {
		return false
	}
	for i := 0; i < n; i++ {
		if c := v[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// isLowerEmail is a plain check: local@domain.tld, no upper case, no
// spaces, one @.
func isLowerEmail(v string) bool {
	local, domain, ok := strings.Cut(v, "@")
	if !ok || local == "" || strings.Contains(domain, "@") {
		return false
	}
	dot := strings.LastIndexByte(domain, '.')
	if dot <= 0 || dot == len(domain)-1 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= ' ' || c >= 0x7f || c >= 'A' && c <= 'Z' {
			return false
		}
	}
	return true
}

// ListMembers returns the current members of a customer list, sorted.
func (s *Simulator) ListMembers(adAccountID, listID string) []string {
	var out []string
	s.withList(adAccountID, listID, func(l *customerList) { out = slices.Sorted(maps.Keys(l.members)) })
	return out
}

// ListArrivalHook is told of a record of a customer list update the
// simulator applied (see SetListArrivalHook): its ad account, the list,
// whether the operation was ADD (else REMOVE), the record as sent
// (trimmed), and when its request arrived (Options.Now).
type ListArrivalHook func(adAccountID, listID string, add bool, record string, at time.Time)

// SetListArrivalHook sets a function called once per record of every 200
// answer of PATCH on a customer list, in request order (repeats and
// records absent from the list included: the records the list's counters
// count); nil, the default, removes it. Records given at the list's
// creation are not reported. Like SetArrivalHook's, it is called on the
// request's goroutine before the answer is written, outside the
// simulator's locks, concurrently for concurrent requests: it must be safe
// for concurrent use and quick. Benchmarks use it for per-record arrival
// times.
func (s *Simulator) SetListArrivalHook(h ListArrivalHook) {
	if h == nil {
		s.listHook.Store(nil)
		return
	}
	s.listHook.Store(&h)
}

// withList calls f with one customer list under its account's lock, if
// both exist.
func (s *Simulator) withList(adAccountID, listID string, f func(*customerList)) {
	a := s.account(adAccountID)
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if l := a.lists[listID]; l != nil {
		f(l)
	}
}

// Lists returns the customer lists of an ad account, by id.
func (s *Simulator) Lists(adAccountID string) []CustomerListInfo {
	a := s.account(adAccountID)
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]CustomerListInfo, 0, len(a.lists))
	for _, l := range a.lists {
		out = append(out, CustomerListInfo{
			ID: l.id, Name: l.name, Members: len(l.members), Known: l.known,
			Uploaded: l.added, Removed: l.removed, NumBatches: l.batches,
			CreatedAt: l.created, UpdatedAt: l.updated,
		})
	}
	slices.SortFunc(out, func(x, y CustomerListInfo) int { return compareIDs(x.ID, y.ID) })
	return out
}

// CustomerListRecords returns the records added and removed so far on one
// customer list (num_uploaded_user_records and num_removed_user_records).
func (s *Simulator) CustomerListRecords(adAccountID, listID string) (added, removed int) {
	s.withList(adAccountID, listID, func(l *customerList) { added, removed = l.added, l.removed })
	return added, removed
}

// RemovedFirst returns the records whose first operation on one customer
// list was a REMOVE, sorted: for records that are added later (an enter and
// then its exit), each is an exit that reached the list before its enter.
func (s *Simulator) RemovedFirst(adAccountID, listID string) []string {
	var out []string
	s.withList(adAccountID, listID, func(l *customerList) { out = slices.Sorted(maps.Keys(l.removedFirst)) })
	return out
}

// firstID is the first id given to a customer list or audience.
const firstID = 549_755_900_001

// newID returns a new numeric id, unique within the Simulator.
func (s *Simulator) newID() string { return strconv.FormatInt(s.lastID.Add(1), 10) }

// compareIDs orders numeric ids by value.
func compareIDs(x, y string) int {
	if len(x) != len(y) {
		return len(x) - len(y)
	}
	return strings.Compare(x, y)
}
