//go:build goolm

package e2e

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/attachment"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// TestClientExperience walks issue 3's "done means" through one real
// daemon: an encrypted image that only the recipient's client can read
// (the server stores ciphertext), a mention that shows bob a highlight
// count until he reads it, and a search that finds an old message.
// Cross-signing a second device is TestCrossSigningTrust.
func TestClientExperience(t *testing.T) {
	// An encrypted room: alice sends bob an image, encrypted as an
	// attachment (AES-CTR, the key inside the Megolm-encrypted event).
	_, secret, alice, bob := encryptedRoom(t)
	ac, bc := alice.client, bob.client

	img := image.NewRGBA(image.Rect(0, 0, 32, 32))
	for i := range img.Pix {
		img.Pix[i] = byte(i * 7)
	}
	img.Set(3, 3, color.RGBA{R: 255, A: 255})
	var plain bytes.Buffer
	noErr(t, png.Encode(&plain, img), "encode png")
	file := attachment.NewEncryptedFile()
	upload := must(ac.UploadBytes(ctx(t), encryptCopy(file, plain.Bytes()), "application/octet-stream")).get(t)
	stored := must(bc.DownloadBytes(ctx(t), upload.ContentURI)).get(t)
	if bytes.Equal(stored, plain.Bytes()) {
		t.Fatal("the server holds the image in clear")
	}
	noErr(t, alice.mach.ShareGroupSession(ctx(t), secret, []id.UserID{ac.UserID, bc.UserID}), "share session")
	content, err := alice.mach.EncryptMegolmEvent(ctx(t), secret, event.EventMessage, &event.MessageEventContent{
		MsgType: event.MsgImage, Body: "owl.png",
		File: &event.EncryptedFileInfo{EncryptedFile: *file, URL: upload.ContentURI.CUString()},
		Info: &event.FileInfo{MimeType: "image/png", Width: 32, Height: 32, Size: plain.Len()},
	})
	noErr(t, err, "encrypt image event")
	imageEvent := must(ac.SendMessageEvent(ctx(t), secret, event.EventEncrypted, content)).get(t).EventID
	got := bob.receiveMessage(t, secret, imageEvent)
	if got.MsgType != event.MsgImage || got.File == nil {
		t.Fatalf("bob decrypted %+v, want an encrypted image", got)
	}
	uri, err := got.File.URL.Parse()
	noErr(t, err, "parse image URI")
	cipher := must(bc.DownloadBytes(ctx(t), uri)).get(t)
	noErr(t, got.File.PrepareForDecryption(), "prepare decryption")
	clear, err := decryptCopy(got.File, cipher)
	noErr(t, err, "decrypt the image")
	if !bytes.Equal(clear, plain.Bytes()) {
		t.Fatal("bob's decrypted image differs from alice's")
	}

	// A plain room: an old message, many newer ones, then a mention.
	open := PublicRoom(t, ac, bc)
	SendText(t, ac, open, "the lighthouse keeper left a note under the mat")
	for i := range 40 {
		SendText(t, ac, open, fmt.Sprintf("chatter %d", i))
	}
	mention := must(ac.SendMessageEvent(ctx(t), open, event.EventMessage, &event.MessageEventContent{
		MsgType: event.MsgText, Body: "bob, look at this",
		Mentions: &event.Mentions{UserIDs: []id.UserID{bc.UserID}},
	})).get(t).EventID
	highlights := func(resp *mautrix.RespSync) int {
		if r := resp.Rooms.Join[open]; r != nil && r.UnreadNotifications != nil {
			return r.UnreadNotifications.HighlightCount
		}
		return -1
	}
	resp := SyncUntil(t, bc, "", "", "a highlight for the mention", func(r *mautrix.RespSync) bool { return highlights(r) == 1 })
	noErr(t, bc.SendReceipt(ctx(t), open, mention, event.ReceiptTypeRead, nil), "read receipt")
	SyncUntil(t, bc, resp.NextBatch, "", "the highlight cleared by the receipt", func(r *mautrix.RespSync) bool { return highlights(r) == 0 })

	// Bob searches and finds the old message.
	var found struct {
		SearchCategories struct {
			RoomEvents struct {
				Results []struct {
					Result struct {
						EventID id.EventID `json:"event_id"`
						Content struct {
							Body string `json:"body"`
						} `json:"content"`
					} `json:"result"`
				} `json:"results"`
			} `json:"room_events"`
		} `json:"search_categories"`
	}
	req := map[string]any{"search_categories": map[string]any{"room_events": map[string]any{"search_term": "lighthouse"}}}
	must(bc.MakeRequest(ctx(t), "POST", bc.BuildClientURL("v3", "search"), req, &found)).get(t)
	res := found.SearchCategories.RoomEvents.Results
	if len(res) != 1 || res[0].Result.Content.Body != "the lighthouse keeper left a note under the mat" {
		t.Fatalf("search for lighthouse: %+v", res)
	}
}
