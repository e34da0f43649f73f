package protocol

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidTextRefusesWhatAClientCannotRead(t *testing.T) {
	cases := []struct {
		name string
		data string
		want bool
	}{
		{"plain object", `{"text":"hello"}`, true},
		{"non-ASCII text", `{"text":"grüße 東京 🎉"}`, true},
		{"escaped pair", `"\ud83c\udf89"`, true},
		{"escaped pair, upper case", `"\uD83C\uDF89"`, true},
		{"other escapes", `"a\"b\\c\n\t\u00e9\/"`, true},
		{"escaped backslash then u", `"\\ud800"`, true},
		{"number", `42`, true},
		{"raw invalid byte", "{\"text\":\"poison \xff here\"}", false},
		{"truncated sequence", "\"\xe2\x82\"", false},
		{"overlong encoding", "\"\xc0\xaf\"", false},
		{"raw surrogate half", "\"\xed\xa0\x80\"", false},
		{"lone high surrogate", `"\ud800"`, false},
		{"lone high surrogate then text", `"\ud800abc"`, false},
		{"high surrogate then another high", `"\ud800\ud800"`, false},
		{"lone low surrogate", `"\udc00"`, false},
		{"reversed pair", `"\udf89\ud83c"`, false},
		{"lone surrogate after escaped backslash", `"\\\ud800"`, false},
		{"lone surrogate in a key", `{"\ud800":1}`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := ValidText([]byte(tc.data)); got != tc.want {
				t.Fatalf("ValidText(%q) = %v, want %v", tc.data, got, tc.want)
			}
		})
	}
}

// FuzzValidText checks ValidText against what encoding/json makes of the
// same JSON: a string that decodes without a replacement character and
// whose bytes are valid UTF-8 is valid text, and one with a lone surrogate
// or a bad byte is not.
func FuzzValidText(f *testing.F) {
	for _, s := range []string{`"a"`, `"\ud800"`, `"\ud83c\udf89"`, "\"\xff\"", `"\\ud800"`, `"\udc00\ud800"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var decoded string
		if json.Unmarshal([]byte(s), &decoded) != nil {
			return
		}
		// encoding/json turns both a bad byte and a lone surrogate into
		// U+FFFD; a string that had neither decodes without one unless it
		// held one itself.
		hadReplacement := false
		for _, r := range s {
			if r == utf8.RuneError {
				hadReplacement = true
			}
		}
		if !hadReplacement && !containsEscapedFFFD(s) {
			want := !containsRune(decoded, utf8.RuneError)
			if got := ValidText([]byte(s)); got != want {
				t.Fatalf("ValidText(%q) = %v, but encoding/json decodes it to %q", s, got, decoded)
			}
		}
	})
}

func containsRune(s string, r rune) bool {
	for _, c := range s {
		if c == r {
			return true
		}
	}
	return false
}

func containsEscapedFFFD(s string) bool {
	for i := 0; i+6 <= len(s); i++ {
		if s[i] == '\\' && strings.EqualFold(s[i+1:i+6], "ufffd") {
			return true
		}
	}
	return false
}

func BenchmarkValidText(b *testing.B) {
	data := []byte(`{"type":"purchase","item":"sword of dawn","price":1200,"note":"gr\u00fc\u00dfe \ud83c\udf89","text":"ok"}`)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if !ValidText(data) {
			b.Fatal("valid text refused")
		}
	}
}

func TestValidDataIsOneJSONValueOfValidText(t *testing.T) {
	cases := []struct {
		data string
		want bool
	}{
		{`{"item":"sword"}`, true},
		{`"text"`, true},
		{`1`, true},
		{`1,"id":"9999999999999-0","key":"victim"`, false}, // would forge the frame's fields
		{`{"unterminated`, false},
		{``, false},
		{"\"\xff\"", false},
		{`"\ud800"`, false},
	}
	for _, tc := range cases {
		if got := ValidData([]byte(tc.data)); got != tc.want {
			t.Errorf("ValidData(%q) = %v, want %v", tc.data, got, tc.want)
		}
	}
}
