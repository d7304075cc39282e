//go:build ignore

// gen writes the icon PNGs and hearth.ico from Render: `go generate
// ./packaging/icons`. TestCommittedIcons fails when they are out of date.
package main

import (
	"fmt"
	"log"
	"os"

	"github.com/hearth-chat/hearth/packaging/icons"
)

func main() {
	var ico [][]byte
	for _, s := range icons.Sizes {
		b, err := icons.Encode(s)
		if err != nil {
			log.Fatal(err)
		}
		if err := os.WriteFile(fmt.Sprintf("hearth-%d.png", s), b, 0o644); err != nil {
			log.Fatal(err)
		}
	}
	for _, s := range icons.ICOSizes {
		b, err := icons.Encode(s)
		if err != nil {
			log.Fatal(err)
		}
		ico = append(ico, b)
	}
	b, err := icons.ICO(icons.ICOSizes, ico)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile("hearth.ico", b, 0o644); err != nil {
		log.Fatal(err)
	}
}
