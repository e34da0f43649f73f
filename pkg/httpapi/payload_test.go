package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/herald-push/herald/pkg/node"
)

// A backend that posts anything but one JSON object of known fields is
// refused with the code it was refused with when a strict json.Decoder
// read the body: unknown and repeated names, a second value, broken JSON.
// What the old decoder accepted is still accepted, decoded the same.
func TestSendBodiesAreRefusedAsAStrictDecoderRefusedThem(t *testing.T) {
	cases := []struct {
		body string
		code string // "" accepted
	}{
		{`{"key":"u1","data":{"gold":5}}`, ""},
		{` {"keys":["u1","u2"] , "data":"hi", "store":true} `, ""},
		{`{"key":"u1","data":{"nested":{"priority":9}}}`, ""}, // names inside data are the message's own
		{`{"key":"u1","data":[1,{"x":"}"}]}`, ""},
		{`{"key":"u1","data":1,"priority":9}`, "unknown_field"},
		{`{"KEY":"u1","data":1}`, "unknown_field"},
		{`{"\u006bey":"u1","data":1,"\u0078":2}`, "unknown_field"},
		{`{"key":"u1","key":"u2","data":1}`, "duplicate_field"},
		{`{"key":"u1","data":1}{"key":"u2","data":2}`, "invalid_json"},
		{`{"key":"u1","data":1} 7`, "invalid_json"},
		{`{"key":"u1","data":`, "invalid_json"},
		{`{"key":"u1" "data":1}`, "invalid_json"},
		{`["u1"]`, "invalid_json"},
		{`{"key":1,"data":1}`, "invalid_json"},
		{`null`, "missing_data"},
		{`{}`, "missing_data"},
	}
	for _, tc := range cases {
		t.Run(tc.body, func(t *testing.T) {
			p, err := parsePayload([]byte(tc.body), "application/json", "", false, true, 1024)
			code := ""
			if err != nil {
				code = node.AsError(err).Code
			}
			if code != tc.code {
				t.Fatalf("code %q (%v), want %q", code, err, tc.code)
			}
			if strings.HasPrefix(tc.body, `{"key":"u1","data":1}`) && code == "invalid_json" &&
				!strings.Contains(err.Error(), "more than one JSON value") {
				t.Fatalf("a second value is refused as %q, want it named", err)
			}
			// The strict decoder of before, for comparison.
			var old payload
			dec := json.NewDecoder(bytes.NewReader([]byte(tc.body)))
			dec.DisallowUnknownFields()
			oldErr := dec.Decode(&old)
			if oldErr == nil {
				if _, terr := dec.Token(); terr != io.EOF {
					oldErr = errors.New("more than one JSON value")
				}
			}
			if checkFields([]byte(tc.body), payloadFields) == nil && (oldErr == nil) != (code == "" || code == "missing_data") {
				t.Fatalf("old decoder said %v, now %q", oldErr, code)
			}
			if code == "" && (string(p.Data) != string(old.Data) || len(p.Keys) != len(old.Keys) || p.Store != old.Store) {
				t.Fatalf("decoded %+v, the old decoder %+v", p, old)
			}
		})
	}
}
