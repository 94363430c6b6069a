package httpapi

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// The query parameters each endpoint takes (never modified).
var (
	writeParams     = []string{"ack", "replicas", "timeout", "if_index", "session", "context", "w"}             // PUT, DELETE
	postParams      = []string{"ack", "replicas", "timeout", "if_index", "session", "op", "by", "context", "w"} // POST /v1/kv/{key}
	readParams      = []string{"consistency", "raw", "session", "max_lag", "max_lag_entries", "r", "repair"}
	transferParams  = []string{"to", "timeout"}
	memberParams    = []string{"timeout"} // the membership changes; GET /v1/members takes none
	conflictsParams = []string{"after", "limit"}
)

// ParseQuery decodes the raw query string of a request to an endpoint that
// takes the parameters named in known, and returns one value per name.
//
// r.URL.Query() drops a pair it cannot decode and Values.Get keeps the first
// of repeated values, so a mangled URL or a typo would quietly get a default
// (a linearizable read, the node's ack mode). ParseQuery fails instead,
// wrapping ErrBadRequest and naming the parameter, on: a bad percent-escape;
// a ';', which some servers and proxies take as a separator and Go does not
// (a literal ';' is written %3B); a name the endpoint does not take; a name
// given twice; a name without a value. Empty pairs ("a=1&&b=2") are skipped,
// as url.ParseQuery does.
func ParseQuery(rawQuery string, known []string) (url.Values, error) {
	q := url.Values{}
	for part := range strings.SplitSeq(rawQuery, "&") {
		if part == "" {
			continue
		}
		rawName, rawValue, _ := strings.Cut(part, "=")
		name, err := url.QueryUnescape(rawName)
		if err != nil {
			return nil, fmt.Errorf("%w: query parameter name %q is not validly percent-encoded", ErrBadRequest, rawName)
		}
		if strings.Contains(part, ";") {
			return nil, fmt.Errorf("%w: query parameter %q: the ';' in %q is not a separator (use '&', or %%3B for a literal ';')",
				ErrBadRequest, name, part)
		}
		if !slices.Contains(known, name) {
			takes := "none"
			if len(known) > 0 {
				takes = strings.Join(known, ", ")
			}
			return nil, fmt.Errorf("%w: unknown query parameter %q (this endpoint takes %s)", ErrBadRequest, name, takes)
		}
		if q.Has(name) {
			return nil, fmt.Errorf("%w: query parameter %q is given more than once", ErrBadRequest, name)
		}
		value, err := url.QueryUnescape(rawValue)
		if err != nil {
			return nil, fmt.Errorf("%w: query parameter %q: value %q is not validly percent-encoded", ErrBadRequest, name, rawValue)
		}
		if value == "" {
			return nil, fmt.Errorf("%w: query parameter %q is given without a value", ErrBadRequest, name)
		}
		q.Set(name, value)
	}
	return q, nil
}
