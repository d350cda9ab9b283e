package simulator

import (
	"encoding/base64"
	"net/http"
	"sort"
	"strconv"
)

// Paging of list answers (the spec's Paginated).
const (
	DefaultPageSize = 25
	MaxPageSize     = 250
)

// paginated is the spec's Paginated: items and the bookmark of the next
// page (null on the last).
type paginated[T any] struct {
	Items    []T     `json:"items"`
	Bookmark *string `json:"bookmark"`
}

// pageOf answers one page of items (sorted here by numeric id, ascending
// or, with order=DESCENDING, descending) per the query's page_size and
// bookmark. The bookmark is opaque: the base64 of the next page's first id.
// It answers 400 itself for a bad parameter and then returns false.
func pageOf[T any](w http.ResponseWriter, r *http.Request, a *account, items []T, idOf func(*T) string) bool {
	q := r.URL.Query()
	bad := func(msg string) bool {
		a.badRequest.Add(1)
		writeError(w, http.StatusBadRequest, CodeInvalidParameter, msg)
		return false
	}
	size := DefaultPageSize
	if v := q.Get("page_size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxPageSize {
			return bad("page_size must be an integer from 1 to 250.")
		}
		size = n
	}
	desc := false
	switch q.Get("order") {
	case "", "ASCENDING":
	case "DESCENDING":
		desc = true
	default:
		return bad("order must be ASCENDING or DESCENDING.")
	}
	less := func(x, y string) bool { return compareIDs(x, y) < 0 }
	sort.Slice(items, func(i, j int) bool { return less(idOf(&items[i]), idOf(&items[j])) != desc })
	start := 0
	if bm := q.Get("bookmark"); bm != "" {
		b, err := base64.RawURLEncoding.DecodeString(bm)
		if err != nil || !validID(string(b)) {
			return bad("Invalid bookmark.")
		}
		from := string(b)
		start = sort.Search(len(items), func(i int) bool {
			id := idOf(&items[i])
			return id == from || less(from, id) != desc
		})
	}
	ans := paginated[T]{Items: append([]T{}, items[start:]...)}
	if len(ans.Items) > size {
		next := base64.RawURLEncoding.EncodeToString([]byte(idOf(&ans.Items[size])))
		ans.Items, ans.Bookmark = ans.Items[:size], &next
	}
	a.accepted.Add(1)
	writeJSON(w, http.StatusOK, ans)
	return true
}
