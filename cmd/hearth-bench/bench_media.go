package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"net/http"
	"strings"
	"time"
)

// mediaRequest does one raw media request (an upload body or a download)
// and returns the response body for a 200; anything else is an error.
func (b *bench) mediaRequest(ctx context.Context, u *user, method, path, contentType string, body []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.d.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+u.token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		if aerr := u.d.alive(); aerr != nil {
			return nil, aerr
		}
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return nil, newHTTPError(method+" "+path, resp.StatusCode, out, 300)
	}
	return out, nil
}

// uploadMedia uploads body and returns "server/mediaId" of its mxc URI.
func (b *bench) uploadMedia(ctx context.Context, u *user, contentType string, body []byte) (string, error) {
	out, err := b.mediaRequest(ctx, u, "POST", "/_matrix/media/v3/upload", contentType, body)
	if err != nil {
		return "", err
	}
	var r struct {
		ContentURI string `json:"content_uri"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return "", err
	}
	return strings.TrimPrefix(r.ContentURI, "mxc://"), nil
}

// photo12MP is a 4000×3000 JPEG with enough detail to decode like a photo.
func photo12MP() ([]byte, error) {
	img := image.NewYCbCr(image.Rect(0, 0, 4000, 3000), image.YCbCrSubsampleRatio420)
	for y := 0; y < 3000; y++ {
		for x := 0; x < 4000; x++ {
			img.Y[y*img.YStride+x] = uint8(x*7 ^ y*13)
		}
	}
	for y := 0; y < 1500; y++ {
		for x := 0; x < 2000; x++ {
			img.Cb[y*img.CStride+x], img.Cr[y*img.CStride+x] = uint8(x), uint8(y)
		}
	}
	var buf bytes.Buffer
	err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90})
	return buf.Bytes(), err
}

// benchMedia measures the content repository: the first (uncached)
// thumbnail of a 12 MP JPEG, which decodes the whole photo and scales it;
// the same thumbnail from the on-disk cache; and upload and download
// throughput of 8 MiB files through the authenticated endpoints.
func benchMedia(ctx context.Context, b *bench) []row {
	thumbMetric := "thumbnail of a 12 MP JPEG, 320×240 scale, uncached (median of 5) / cached"
	upMetric := "media upload throughput, 8 × 8 MiB sequential"
	downMetric := "media download throughput, 8 × 8 MiB sequential"
	const thumbTarget, tputTarget = "recorded", "recorded"
	fail := func(err error) []row {
		return []row{errRow(thumbMetric, thumbTarget, err), errRow(upMetric, tputTarget, err), errRow(downMetric, tputTarget, err)}
	}
	photo, err := photo12MP()
	if err != nil {
		return fail(err)
	}
	d, _, err := b.start(ctx)
	if err != nil {
		return fail(err)
	}
	defer b.stop(d)
	u, err := b.register(ctx, d, "media")
	if err != nil {
		return fail(err)
	}
	var cold []time.Duration
	var cached time.Duration
	for i := 0; i < 5; i++ {
		// Bytes after the JPEG's end marker make each upload a new file
		// (a new hash, so no cached thumbnail) that decodes the same.
		body := append(append([]byte{}, photo...), fmt.Sprintf("bench %d", i)...)
		mxc, err := b.uploadMedia(ctx, u, "image/jpeg", body)
		if err != nil {
			return fail(err)
		}
		path := "/_matrix/client/v1/media/thumbnail/" + mxc + "?width=320&height=240&method=scale"
		t := time.Now()
		if _, err := b.mediaRequest(ctx, u, "GET", path, "", nil); err != nil {
			return fail(err)
		}
		cold = append(cold, time.Since(t))
		t = time.Now()
		if _, err := b.mediaRequest(ctx, u, "GET", path, "", nil); err != nil {
			return fail(err)
		}
		cached = time.Since(t)
	}
	thumb := row{metric: thumbMetric, target: thumbTarget,
		value: fmt.Sprintf("%s / %s (%.1f MB file)", ms(pct(cold, 50)), ms(cached), float64(len(photo))/1e6),
		nums:  figs(fig("uncached", msF(pct(cold, 50)), "ms"), fig("cached", msF(cached), "ms"))}

	const n, size = 8, 8 << 20
	var ids []string
	var upTime, downTime time.Duration
	for i := 0; i < n; i++ {
		body := bytes.Repeat([]byte{byte(i)}, size)
		t := time.Now()
		mxc, err := b.uploadMedia(ctx, u, "application/octet-stream", body)
		if err != nil {
			return fail(err)
		}
		upTime += time.Since(t)
		ids = append(ids, mxc)
	}
	for _, mxc := range ids {
		t := time.Now()
		out, err := b.mediaRequest(ctx, u, "GET", "/_matrix/client/v1/media/download/"+mxc, "", nil)
		if err != nil {
			return fail(err)
		}
		downTime += time.Since(t)
		if len(out) != size {
			return fail(fmt.Errorf("downloaded %d bytes, want %d", len(out), size))
		}
	}
	mbps := func(d time.Duration) string { return fmt.Sprintf("%.0f MB/s", float64(n*size)/1e6/d.Seconds()) }
	mbpsF := func(d time.Duration) []num { return figs(fig("", float64(n*size)/1e6/d.Seconds(), "MB/s")) }
	return []row{thumb,
		{metric: upMetric, value: mbps(upTime), target: tputTarget, nums: mbpsF(upTime)},
		{metric: downMetric, value: mbps(downTime), target: tputTarget, nums: mbpsF(downTime)}}
}
