package store

import (
	"context"
	"math/rand/v2"
	"time"
)

// Change is one record under a followed prefix as it now is.
type Change struct {
	Key     string
	Value   []byte
	Version Version // "" where the backend's listing gives none
	Deleted bool
}

// Update is what Follow sends: every record under the prefix (Reset: what
// the reader knew is replaced), or the records that changed since the last
// Update.
type Update struct {
	Reset   bool
	Changes []Change
}

// Follower is a backend that can tell a reader what changed under a prefix
// (etcd's watch, the API server's watch), so that keeping a copy of many
// records costs each change once instead of a listing of all of them on
// every refresh.
type Follower interface {
	// Follow sends every record under prefix (a Reset), then each change,
	// until ctx ends, when it closes the channel. After a break it cannot
	// resume from (the backend compacted its history, or the connection
	// was lost), it sends a Reset again.
	Follow(ctx context.Context, prefix string) <-chan Update
}

// Follow follows the records under prefix in st: through its watch if it is
// a Follower, otherwise with a fresh listing about every poll. The listings'
// times are spread at random between half and one and a half poll, so that
// readers started together do not list together.
func Follow(ctx context.Context, st Store, prefix string, poll time.Duration) <-chan Update {
	if f, ok := st.(Follower); ok {
		return f.Follow(ctx, prefix)
	}
	ch := make(chan Update, 1)
	go func() {
		defer close(ch)
		for wait := time.Duration(0); ; wait = poll/2 + rand.N(poll) {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			recs, err := st.List(ctx, prefix)
			if err != nil {
				continue // the next listing is the retry
			}
			u := Update{Reset: true}
			for k, v := range recs {
				u.Changes = append(u.Changes, Change{Key: k, Value: v})
			}
			if !SendUpdate(ctx, ch, u) {
				return
			}
		}
	}()
	return ch
}

// SendUpdate sends u on ch unless ctx ends first (for backends' Follow).
func SendUpdate(ctx context.Context, ch chan<- Update, u Update) bool {
	select {
	case ch <- u:
		return true
	case <-ctx.Done():
		return false
	}
}

// RetryWait waits before listing again after a failure, for at most a second
// (a Follower's own backoff is the backend client's).
func RetryWait(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(time.Second):
		return true
	}
}
