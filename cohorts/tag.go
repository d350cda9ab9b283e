package cohorts

import "strings"

// TagSource says which Tag ID [ResolveTag] chose. Its values are stable: they
// are the tag_source log field and metric label.
type TagSource string

// The two sources of a Tag ID.
const (
	TagSourceOverride TagSource = "override" // the activation's own tag_id
	TagSourceDefault  TagSource = "default"  // the configured default Tag ID
)

// ResolveTag is the one place where an activation's Tag ID override wins over
// the default, or not: a blank override (empty or only whitespace) yields
// defaultTagID and [TagSourceDefault]; any other yields the override, trimmed,
// and [TagSourceOverride].
func ResolveTag(override, defaultTagID string) (tagID string, source TagSource) {
	if o := strings.TrimSpace(override); o != "" {
		return o, TagSourceOverride
	}
	return defaultTagID, TagSourceDefault
}
