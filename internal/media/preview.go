package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/html"

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// AddrPolicy decides whether a URL preview may connect to an address.
type AddrPolicy func(netip.Addr) bool

// Preview limits.
const (
	previewTimeout   = 10 * time.Second
	previewMaxBytes  = 1 << 20
	previewCacheSize = 256
	previewCacheTTL  = time.Hour
)

var errAddrRefused = errors.New("address not allowed for URL previews")

type previewEntry struct {
	og      map[string]any
	expires time.Time
}

// previewer fetches pages for previews and caches what it found.
type previewer struct {
	client *http.Client
	mu     sync.Mutex
	cache  map[string]previewEntry
}

func newPreviewer(policy AddrPolicy) *previewer {
	dialer := &net.Dialer{
		Timeout: previewTimeout,
		// Control runs on the address actually dialled, after DNS: a name
		// that resolves (or re-resolves) to a private address is refused
		// here, so DNS rebinding cannot get around the policy.
		Control: func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || !policy(ap.Addr()) {
				return fmt.Errorf("%w: %s", errAddrRefused, address)
			}
			return nil
		},
	}
	tr := &http.Transport{
		Proxy:                 nil, // a proxy would dial for us and bypass Control
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   previewTimeout,
		ResponseHeaderTimeout: previewTimeout,
		MaxIdleConns:          4,
		IdleConnTimeout:       30 * time.Second,
	}
	return &previewer{cache: map[string]previewEntry{}, client: &http.Client{
		Transport: tr,
		Timeout:   previewTimeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("too many redirects")
			}
			if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
				return errors.New("redirect to a non-HTTP URL")
			}
			return nil
		},
	}}
}

// Preview returns the OpenGraph data of a page (GET /preview_url). Images
// are not fetched, so og:image is left out (the spec wants an mxc:// URI
// there). Errors are M_UNKNOWN with the reason; a refused address is 403
// M_FORBIDDEN.
func (r *Repo) Preview(ctx context.Context, rawURL string) (map[string]any, error) {
	if !r.cfg.Previews {
		return nil, matrixerr.Forbidden("URL previews are disabled on this server")
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, matrixerr.InvalidParam("url must be an absolute http or https URL")
	}
	p := r.previews
	key := u.String()
	p.mu.Lock()
	e, ok := p.cache[key]
	p.mu.Unlock()
	if ok && time.Now().Before(e.expires) {
		return e.og, nil
	}
	og, err := p.fetch(ctx, u)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if len(p.cache) >= previewCacheSize {
		for k, v := range p.cache { // drop expired entries, else an arbitrary one
			if time.Now().After(v.expires) || len(p.cache) >= previewCacheSize {
				delete(p.cache, k)
			}
		}
	}
	p.cache[key] = previewEntry{og: og, expires: time.Now().Add(previewCacheTTL)}
	p.mu.Unlock()
	return og, nil
}

func (p *previewer) fetch(ctx context.Context, u *url.URL) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(ctx, previewTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, matrixerr.InvalidParam("bad url")
	}
	req.Header.Set("User-Agent", "Hearth URL preview")
	req.Header.Set("Accept", "text/html")
	res, err := p.client.Do(req)
	if errors.Is(err, errAddrRefused) {
		return nil, matrixerr.Forbidden("URL previews may not reach private or local addresses")
	}
	if err != nil {
		return nil, &matrixerr.Error{Status: http.StatusBadGateway, Code: "M_UNKNOWN", Message: "could not fetch the URL"}
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, &matrixerr.Error{Status: http.StatusBadGateway, Code: "M_UNKNOWN",
			Message: fmt.Sprintf("the URL answered %d", res.StatusCode)}
	}
	ct, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
	og := map[string]any{}
	if ct != "text/html" && ct != "application/xhtml+xml" {
		return og, nil
	}
	return parseOpenGraph(io.LimitReader(res.Body, previewMaxBytes)), nil
}

// parseOpenGraph reads og:* meta properties, falling back to <title> and
// the description meta tag for og:title and og:description.
func parseOpenGraph(body io.Reader) map[string]any {
	og := map[string]any{}
	var title, description string
	z := html.NewTokenizer(body)
	inTitle := false
	for {
		switch z.Next() {
		case html.ErrorToken:
			if _, ok := og["og:title"]; !ok && title != "" {
				og["og:title"] = title
			}
			if _, ok := og["og:description"]; !ok && description != "" {
				og["og:description"] = description
			}
			delete(og, "og:image") // not fetched: no mxc:// URI to give
			return og
		case html.StartTagToken, html.SelfClosingTagToken:
			t := z.Token()
			switch t.Data {
			case "title":
				inTitle = title == ""
			case "meta":
				var prop, name, content string
				for _, a := range t.Attr {
					switch strings.ToLower(a.Key) {
					case "property":
						prop = a.Val
					case "name":
						name = strings.ToLower(a.Val)
					case "content":
						content = a.Val
					}
				}
				if strings.HasPrefix(prop, "og:") && len(og) < 32 {
					og[prop] = truncate(content, 2000)
				}
				if name == "description" {
					description = truncate(content, 2000)
				}
			}
		case html.TextToken:
			if inTitle {
				title = truncate(strings.TrimSpace(string(z.Text())), 500)
				inTitle = false
			}
		case html.EndTagToken:
			inTitle = false
		}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !isRuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
