package protocol

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"u1", true},
		{"player:42@eu-west.shard_3", true},
		{strings.Repeat("k", 128), true},
		{"", false},
		{strings.Repeat("k", 129), false},
		{"has space", false},
		{"brace{tag}", false}, // would break Redis hash tags
		{"slash/", false},
		{"quote\"", false}, // would break frames
		{"ключ", false},
		{"nul\x00", false},
	}
	for _, tc := range tests {
		if got := ValidName(tc.name); got != tc.ok {
			t.Errorf("ValidName(%q) = %v, want %v", tc.name, got, tc.ok)
		}
	}
}

func TestFramesAreTheDocumentedJSON(t *testing.T) {
	tests := []struct {
		kind Kind
		name string
		want string
	}{
		{KindKey, "u1", `{"id":"m1","key":"u1","data":{"a":[1,"x"]},"ts":1700000000123}`},
		{KindTopic, "board", `{"id":"m1","topic":"board","data":{"a":[1,"x"]},"ts":1700000000123}`},
		{KindBroadcast, "", `{"id":"m1","data":{"a":[1,"x"]},"ts":1700000000123}`},
	}
	for _, tc := range tests {
		got := string(AppendFrame(nil, tc.kind, "m1", tc.name, []byte(`{"a":[1,"x"]}`), 1700000000123))
		if got != tc.want {
			t.Errorf("frame = %s, want %s", got, tc.want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("frame %s is not valid JSON", got)
		}
	}
}

func TestRawPayloadUnwrapsOnlyStrings(t *testing.T) {
	tests := []struct{ data, want string }{
		{`"hello \"world\"\n"`, "hello \"world\"\n"},
		{`{"gold":5}`, `{"gold":5}`},
		{`42`, `42`},
		{`null`, `null`},
	}
	for _, tc := range tests {
		if got := string(RawPayload([]byte(tc.data))); got != tc.want {
			t.Errorf("RawPayload(%s) = %q, want %q", tc.data, got, tc.want)
		}
	}
}

func BenchmarkAppendFrame(b *testing.B) {
	data := []byte(`{"item":"sword","qty":1,"note":"a purchase arrived"}`)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendFrame(buf[:0], KindKey, "mhx2k9d1-4fqa-1", "player:42", data, 1700000000123)
	}
}

// FuzzValidName checks ValidName against the documented rule, and that a
// valid name always makes a valid frame.
func FuzzValidName(f *testing.F) {
	for _, s := range []string{"u1", "", "a b", "{tag}", strings.Repeat("k", 129), "player:42@eu-west.shard_3", "\"", "ключ"} {
		f.Add(s)
	}
	rule := regexp.MustCompile(`^[A-Za-z0-9_.:@-]{1,128}$`)
	f.Fuzz(func(t *testing.T, s string) {
		got := ValidName(s)
		if want := rule.MatchString(s); got != want {
			t.Fatalf("ValidName(%q) = %v, the rule says %v", s, got, want)
		}
		if got {
			for _, kind := range []Kind{KindKey, KindTopic} {
				if f := AppendFrame(nil, kind, s, s, []byte(`"x"`), 1); !json.Valid(f) {
					t.Fatalf("frame for valid name %q is not JSON: %s", s, f)
				}
			}
		}
	})
}

func TestStoredIDsParseAndOrder(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"1795723200000-0", true}, {"0-0", true}, {"18446744073709551615-18446744073709551615", true},
		{"", false}, {"1795723200000", false}, {"-1", false}, {"1-", false}, {"a-1", false},
		{"+1-1", false}, {"1-+1", false}, {"18446744073709551616-0", false}, {"mhx2k9d1-4fqa-1", false},
	}
	for _, tc := range tests {
		id, ok := ParseStoredID(tc.in)
		if ok != tc.ok {
			t.Errorf("ParseStoredID(%q) ok = %v, want %v", tc.in, ok, tc.ok)
		}
		if ok && id.String() != tc.in {
			t.Errorf("ParseStoredID(%q).String() = %q", tc.in, id.String())
		}
	}
	a, _ := ParseStoredID("5-9")
	b, _ := ParseStoredID("6-0")
	c, _ := ParseStoredID("6-1")
	if !b.After(a) || !c.After(b) || a.After(b) || b.After(b) || !a.After(StoredID{}) {
		t.Error("stored ids are not ordered by milliseconds then sequence")
	}
}

func TestCloseCodesAreTheWebSocketNumbersAndNameThemselves(t *testing.T) {
	for _, tc := range []struct {
		code CloseCode
		num  uint16
		name string
	}{
		{CloseNormal, 1000, "1000 normal"},
		{CloseSlowConsumer, 1008, "1008 slow consumer"},
		{CloseTooBig, 1009, "1009 too big"},
		{CloseServiceRestart, 1012, "1012 service restart"},
		{CloseTryAgainLater, 1013, "1013 try again later"},
		{CloseDisconnected, 4001, "4001 disconnected"},
		{CloseTokenExpired, 4002, "4002 token expired"},
		{CloseCode(4999), 4999, "4999"},
	} {
		if uint16(tc.code) != tc.num || tc.code.String() != tc.name {
			t.Errorf("code %d reads %q, want %d %q", uint16(tc.code), tc.code.String(), tc.num, tc.name)
		}
	}
}
