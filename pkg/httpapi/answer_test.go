package httpapi

import (
	"encoding/json"
	"reflect"
	"testing"
)

// A backend reads the same send answer, byte for byte, whether the node
// wrote it by hand or encoding/json did: for every shape of answer, and for
// strings the hand encoder must leave to encoding/json.
func TestSendAnswerIsWrittenAsEncodingJSONWritesIt(t *testing.T) {
	cases := []struct {
		name  string
		a     sendAnswer
		plain bool // written by hand
	}{
		{"offline key", sendAnswer{ID: "01J9Z3", Online: []string{}, Offline: []string{"u1"}}, true},
		{"online keys", sendAnswer{ID: "01J9Z3", Online: []string{"u1", "user.2@x:y-z_"}, Offline: []string{}}, true},
		{"nil lists", sendAnswer{ID: "x"}, true},
		{"stored", sendAnswer{ID: "x", Online: []string{"b"}, Offline: []string{"a"}, Results: map[string]keyAnswer{
			"b": {ID: "1-0", Status: "delivered"}, "a": {ID: "2-0", Status: "stored"}, "c": {Status: "not_stored"}}}, true},
		{"many stored", sendAnswer{ID: "x", Results: manyResults(40)}, true},
		{"quote in a key", sendAnswer{ID: "x", Online: []string{`a"b`}}, false},
		{"html in an id", sendAnswer{ID: "<&>"}, false},
		{"unicode in a result key", sendAnswer{ID: "x", Results: map[string]keyAnswer{"é": {Status: "stored"}}}, false},
		{"control character", sendAnswer{ID: "x", Offline: []string{"a\nb"}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want, err := json.Marshal(tc.a)
			if err != nil {
				t.Fatal(err)
			}
			got, plain := appendSendAnswer(nil, tc.a)
			if plain != tc.plain {
				t.Fatalf("written by hand: %v, want %v", plain, tc.plain)
			}
			if plain && string(got) != string(want) {
				t.Fatalf("by hand:\n%s\nencoding/json:\n%s", got, want)
			}
		})
	}
}

// A field added to the answer shows up in the hand-written one too: every
// field set, the two agree.
func TestSendAnswerByHandWritesEveryField(t *testing.T) {
	var a sendAnswer
	v := reflect.ValueOf(&a).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString("v" + v.Type().Field(i).Name)
		case reflect.Int:
			f.SetInt(int64(7 + i))
		case reflect.Slice:
			f.Set(reflect.ValueOf([]string{"k" + v.Type().Field(i).Name}))
		case reflect.Map:
			f.Set(reflect.ValueOf(map[string]keyAnswer{"k": {ID: "1-0", Status: "stored"}}))
		default:
			t.Fatalf("field %s of kind %s: teach appendSendAnswer and this test about it", v.Type().Field(i).Name, f.Kind())
		}
	}
	want, _ := json.Marshal(a)
	got, plain := appendSendAnswer(nil, a)
	if !plain || string(got) != string(want) {
		t.Fatalf("by hand (plain %v):\n%s\nencoding/json:\n%s", plain, got, want)
	}
}

func manyResults(n int) map[string]keyAnswer {
	m := make(map[string]keyAnswer, n)
	for i := range n {
		m["key-"+string(rune('a'+i%26))+string(rune('a'+i/26))] = keyAnswer{ID: "1-0", Status: "acked"}
	}
	return m
}
