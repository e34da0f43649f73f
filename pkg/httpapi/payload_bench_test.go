package httpapi

import (
	"strings"
	"testing"
)

// BenchmarkParsePayload is the send path's body parsing: a typical send,
// and one with 16 KiB of data, whose names checkFields must skip past.
func BenchmarkParsePayload(b *testing.B) {
	bodies := map[string]string{
		"small": `{"key":"player-42","data":{"item":"sword","qty":1},"store":true}`,
		"16KiB": `{"keys":["u1","u2","u3"],"data":{"text":"` + strings.Repeat(`ab\"cd `, 16<<10/7) + `"}}`,
	}
	for name, body := range bodies {
		b.Run(name, func(b *testing.B) {
			raw := []byte(body)
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := parsePayload(raw, "application/json", "", false, true, 64<<10); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCheckFields is what the field-name check adds to the parse.
func BenchmarkCheckFields(b *testing.B) {
	raw := []byte(`{"keys":["u1","u2","u3"],"data":{"text":"` + strings.Repeat(`ab\"cd `, 16<<10/7) + `"}}`)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if err := checkFields(raw, payloadFields); err != nil {
			b.Fatal(err)
		}
	}
}
