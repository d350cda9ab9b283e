package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/destinations/pinterest/simulator"
)

// adminToken is the status page's admin token in these tests.
const adminToken = "admin-token-for-the-page-tests"

// pageDaemon is a daemon whose page can change activations, against a
// simulator that accepts both accounts, with news-a enabled on the
// default Tag ID (brand_a).
func pageDaemon(t *testing.T) (*runningDaemon, *simulator.Simulator) {
	t.Helper()
	sim, err := simulator.Start(simulator.Options{Accounts: map[string]string{
		secretAdAccountA: secretTokenA, secretAdAccountB: secretTokenB,
	}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sim.Close() })
	env := daemonEnv(t, sim)
	env["CONNECTOR_ADMIN_TOKEN"] = adminToken
	d := startRunningDaemon(t, env)
	d.putActivation(d.activations(), cohorts.Activation{ID: "news-a", CohortID: "news", Destination: "pinterest", Enabled: true, Mode: cohorts.ModeEvents})
	d.waitApplied("news-a")
	return d, sim
}

// activations is the daemon's activations bucket.
func (d *runningDaemon) activations() jetstream.KeyValue {
	d.t.Helper()
	kv, err := d.js.KeyValue(d.t.Context(), "COHORT_ACTIVATIONS")
	require.NoError(d.t, err)
	return kv
}

// stored is activation id as the bucket holds it, and its revision.
func (d *runningDaemon) stored(id string) (cohorts.Activation, uint64) {
	d.t.Helper()
	e, err := d.activations().Get(d.t.Context(), id)
	require.NoError(d.t, err)
	var a cohorts.Activation
	require.NoError(d.t, json.Unmarshal(e.Value(), &a))
	return a, e.Revision()
}

// applied counts the daemon's "activation changed" lines for id.
func (d *runningDaemon) applied(id string) int {
	n := 0
	for _, line := range strings.Split(d.stderr.String(), "\n") {
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) == nil && l["message"] == "activation changed" && l["activation_id"] == id {
			n++
		}
	}
	return n
}

// chromium finds Debian's chromium (or another Chrome).
func chromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// artifactDir is where tests write what people look at (the screenshot):
// $COHORT_ARTIFACTS, else a directory under the system's temp dir.
func artifactDir(t *testing.T) string {
	dir := os.Getenv("COHORT_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "cohort-connector-artifacts")
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return dir
}

// A publisher uses the page in a real browser (headless chromium, a phone's
// width): a wrong token is refused and writes nothing; signed in, turning
// an activation off stops its forwarding, and an override Tag ID sends its
// events to the other ad account. A screenshot is written.
func TestStatusPageTogglesInARealBrowser(t *testing.T) {
	exe := chromium()
	if exe == "" {
		if os.Getenv("COHORT_CI") != "" {
			t.Fatal("no chromium: CI must run the browser test (.ci/run installs it: apt-get install chromium)")
		}
		t.Skip("no chromium installed (Debian: apt-get install chromium; .ci/run installs it): the status page is not tested in a browser")
	}
	d, sim := pageDaemon(t)
	page := "http://" + d.listen + "/"

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.WindowSize(430, 932), chromedp.Flag("disable-gpu", true))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()
	// The first Run starts the browser; its context must not time out
	// (chromedp's rule): the steps after it are bounded instead.
	_, err := chromedp.Run(ctx, chromedp.Navigate("about:blank"))
	require.NoError(t, err, "starting chromium")
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	defer cancelTimeout()
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		require.NoError(t, chromedp.Do(ctx, steps...), what)
	}
	text := func(id string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID(id)))
		require.NoError(t, err, "text of #%s", id)
		return s
	}
	id := func(s string) chromedp.ID { return chromedp.ID(s) }

	// A wrong token: refused, nothing written.
	_, rev := d.stored("news-a")
	do("sign in with a wrong token",
		chromedp.Navigate(page), chromedp.WaitVisible(id("token")),
		chromedp.SendKeys(id("token"), "not-the-admin-token-at-all"), chromedp.Click(id("signin")),
		chromedp.WaitVisible(id("refusal")))
	assert.Contains(t, text("refusal"), "admin token refused: nothing was changed")
	_, after := d.stored("news-a")
	assert.Equal(t, rev, after, "a refused sign-in writes nothing")

	// Signed in: turn news-a off; its memberships are no longer forwarded.
	do("sign in",
		chromedp.Navigate(page), chromedp.WaitVisible(id("token")),
		chromedp.SendKeys(id("token"), adminToken), chromedp.Click(id("signin")),
		chromedp.WaitVisible(id("disable-news-a")))
	d.publish("news", 0, 10)
	require.Eventually(t, func() bool { return sent(sim, secretAdAccountA, "news") == 10 }, 15*time.Second, 20*time.Millisecond)
	seen := d.applied("news-a")
	// Each change reloads the page: wait for what only the new page has.
	do("disable news-a", chromedp.Click(id("disable-news-a")), chromedp.WaitVisible(id("enable-news-a")))
	assert.Equal(t, "news-a: disabled", text("notice"))
	a, _ := d.stored("news-a")
	assert.False(t, a.Enabled, "the change is in the bucket")
	require.Eventually(t, func() bool { return d.applied("news-a") > seen }, 15*time.Second, 10*time.Millisecond)
	d.publish("news", 10, 10)
	waitSettled(t, d)
	assert.Equal(t, 10, sent(sim, secretAdAccountA, "news"), "forwarding stopped: nothing more sent")

	// On again, with an override Tag ID: events go to brand_b's account.
	seen = d.applied("news-a")
	do("enable news-a", chromedp.Click(id("enable-news-a")), chromedp.WaitVisible(id("disable-news-a")))
	assert.Equal(t, "news-a: enabled", text("notice"))
	do("set the Tag ID of brand_b", chromedp.SendKeys(id("tag-news-a"), secretTagB), chromedp.Click(id("settag-news-a")))
	// The old page says "enabled" until the new one is loaded (and has no
	// node to read while it loads): poll, tolerating both.
	require.Eventually(t, func() bool {
		s, err := chromedp.Run(ctx, chromedp.Text(id("notice")))
		return err == nil && s == "news-a: Tag ID set to "+secretTagB
	}, 30*time.Second, 50*time.Millisecond, "the page after the change says what it did")
	a, _ = d.stored("news-a")
	assert.True(t, a.Enabled)
	assert.Equal(t, secretTagB, a.TagID)
	require.Eventually(t, func() bool { return d.applied("news-a") >= seen+2 }, 15*time.Second, 10*time.Millisecond)
	// (Turning news-a on again backfills its cohort's members to brand_a,
	// as any newly enabled activation: users 10-19 arrive there now.)
	d.publish("news", 20, 10)
	require.Eventually(t, func() bool { return usersAt(sim, secretAdAccountB, 20, 30) == 10 }, 15*time.Second, 20*time.Millisecond,
		"the override sends news to brand_b")
	waitSettled(t, d)
	assert.Zero(t, usersAt(sim, secretAdAccountA, 20, 30), "and no longer to brand_a")

	do("the page after the changes", chromedp.Navigate(page), chromedp.WaitVisible(id("activation-news-a")))
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	path := filepath.Join(artifactDir(t), "status-page.png")
	require.NoError(t, os.WriteFile(path, png, 0o644))
	t.Logf("screenshot of the status page: %s (%d bytes)", path, len(png))
	require.NoError(t, chromedp.Cancel(ctx))
}

// usersAt counts the users from..to-1 (as d.publish makes them) of whom
// the account received an event.
func usersAt(sim *simulator.Simulator, account string, from, to int) int {
	ems := map[string]bool{}
	for _, r := range sim.Received(account) {
		for _, em := range r.Event.UserData.Em {
			ems[em] = true
		}
	}
	n := 0
	for u := from; u < to; u++ {
		if ems[cohorts.Identifiers{Email: fmt.Sprintf("user%d@example.com", u)}.Hash().Em] {
			n++
		}
	}
	return n
}

// waitSettled waits until the main consumer has nothing pending.
func waitSettled(t *testing.T, d *runningDaemon) {
	t.Helper()
	cons, err := d.js.Consumer(t.Context(), "COHORTS", "cohort-connector")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		ci, err := cons.Info(t.Context())
		return err == nil && ci.NumPending == 0 && ci.NumAckPending == 0
	}, 15*time.Second, 20*time.Millisecond)
}

// Without a browser: a change without the session's CSRF token, from
// another origin, or without signing in is refused and writes nothing;
// without CONNECTOR_ADMIN_TOKEN every change is refused.
func TestStatusPageRefusesForgedChanges(t *testing.T) {
	d, _ := pageDaemon(t)
	base := "http://" + d.listen
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	client := &http.Client{Jar: jar, Timeout: 5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(path, origin string, form url.Values) int {
		req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader(form.Encode()))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := client.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	_, rev := d.stored("news-a")
	disable := url.Values{"op": {"disable"}}

	assert.Equal(t, http.StatusForbidden, post("/activations/news-a", base, disable), "not signed in")
	assert.Equal(t, http.StatusForbidden, post("/login", "http://evil.example", url.Values{"token": {adminToken}}), "a sign-in from another site")
	assert.Equal(t, http.StatusForbidden, post("/login", base, url.Values{"token": {"wrong-token-0123456789"}}), "a wrong token")
	assert.Equal(t, http.StatusSeeOther, post("/login", base, url.Values{"token": {adminToken}}), "the right token")
	assert.Equal(t, http.StatusForbidden, post("/activations/news-a", base, disable), "signed in, without the CSRF token")
	disable.Set("csrf", "forged")
	assert.Equal(t, http.StatusForbidden, post("/activations/news-a", base, disable), "a wrong CSRF token")
	_, after := d.stored("news-a")
	assert.Equal(t, rev, after, "nothing written by any of them")

	// The page's own form, with its CSRF token, is accepted; an invalid
	// change (a Tag ID no account owns) is refused by the CLI's checks.
	req, err := http.NewRequest(http.MethodGet, base+"/", nil)
	require.NoError(t, err)
	resp, err := client.Do(req)
	require.NoError(t, err)
	body := readAll(t, resp)
	i := strings.Index(body, `name="csrf" value="`)
	require.Positive(t, i, "the signed-in page carries a CSRF token")
	csrf := body[i+len(`name="csrf" value="`):]
	csrf = csrf[:strings.IndexByte(csrf, '"')]
	assert.Equal(t, http.StatusForbidden, post("/activations/news-a", "http://evil.example", url.Values{"op": {"disable"}, "csrf": {csrf}}), "another origin")
	assert.Equal(t, http.StatusBadRequest, post("/activations/news-a", base, url.Values{"op": {"tag"}, "tag_id": {"9999"}, "csrf": {csrf}}), "a Tag ID no account owns")
	_, after = d.stored("news-a")
	assert.Equal(t, rev, after, "nothing written")
	assert.Equal(t, http.StatusSeeOther, post("/activations/news-a", base, url.Values{"op": {"disable"}, "csrf": {csrf}}))
	a, _ := d.stored("news-a")
	assert.False(t, a.Enabled)
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}
