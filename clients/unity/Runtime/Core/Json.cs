using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace Herald
{
    /// <summary>The kind of a JSON value.</summary>
    public enum JsonKind { Null, Bool, Number, String, Array, Object }

    /// <summary>
    /// A parsed JSON value: a generic tree (no reflection, so IL2CPP needs no
    /// stripping rules) that also keeps its exact source text.
    /// </summary>
    [Preserve]
    public sealed class JsonValue
    {
        static readonly JsonValue[] NoItems = new JsonValue[0];

        readonly JsonKind kind;
        // The value's JSON text is source[start, start+length), made into a
        // string of its own only when asked for: copying every nested
        // value's text at parse cost a frame's size again per level.
        readonly string source;
        readonly int start, length;
        string text;
        readonly string str;    // String: the decoded string
        readonly bool boolean;
        readonly JsonValue[] items;
        readonly List<KeyValuePair<string, JsonValue>> members;

        internal JsonValue(JsonKind kind, string source, int start, int length, string str, bool boolean,
            JsonValue[] items, List<KeyValuePair<string, JsonValue>> members)
        {
            this.kind = kind;
            this.source = source;
            this.start = start;
            this.length = length;
            this.str = str;
            this.boolean = boolean;
            this.items = items ?? NoItems;
            this.members = members;
        }

        public JsonKind Kind { get { return kind; } }

        /// <summary>The value's JSON text as the server sent it.</summary>
        public string RawJson
        {
            get
            {
                if (text == null) text = start == 0 && length == source.Length ? source : source.Substring(start, length);
                return text;
            }
        }

        public bool IsNull { get { return kind == JsonKind.Null; } }

        /// <summary>The string of a String value; null for any other kind.</summary>
        public string AsString() { return kind == JsonKind.String ? str : null; }

        public bool AsBool()
        {
            if (kind != JsonKind.Bool) throw new InvalidOperationException("not a JSON boolean: " + Clip(RawJson));
            return boolean;
        }

        public double AsDouble()
        {
            if (kind != JsonKind.Number) throw new InvalidOperationException("not a JSON number: " + Clip(RawJson));
            return ParseDouble(RawJson);
        }

        public long AsLong()
        {
            if (kind != JsonKind.Number) throw new InvalidOperationException("not a JSON number: " + Clip(RawJson));
            return ParseLong(RawJson);
        }

        /// <summary>
        /// A JSON number as a double; one beyond its range is ±infinity
        /// (Mono's double.Parse throws there, and a frame must not make the
        /// client throw).
        /// </summary>
        internal static double ParseDouble(string number)
        {
            double d;
            if (double.TryParse(number, NumberStyles.Float, CultureInfo.InvariantCulture, out d)) return d;
            return number[0] == '-' ? double.NegativeInfinity : double.PositiveInfinity;
        }

        /// <summary>A JSON number as a long: truncated if it has a fraction, clamped to long's range.</summary>
        internal static long ParseLong(string number)
        {
            long v;
            if (long.TryParse(number, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out v)) return v;
            double d = ParseDouble(number);
            if (d >= 9.2233720368547758E18) return long.MaxValue;
            if (d <= -9.2233720368547758E18) return long.MinValue;
            return (long)d;
        }

        /// <summary>Items of an array, members of an object; 0 otherwise.</summary>
        public int Count { get { return kind == JsonKind.Object ? members.Count : items.Length; } }

        /// <summary>The array item at i.</summary>
        public JsonValue this[int i] { get { return items[i]; } }

        /// <summary>The object member named name, or null when there is none.</summary>
        public JsonValue this[string name]
        {
            get
            {
                if (kind != JsonKind.Object) return null;
                for (int i = 0; i < members.Count; i++)
                    if (members[i].Key == name) return members[i].Value;
                return null;
            }
        }

        /// <summary>The member names of an object, in order.</summary>
        public IEnumerable<string> Keys
        {
            get
            {
                if (members == null) yield break;
                foreach (var m in members) yield return m.Key;
            }
        }

        public override string ToString() { return RawJson; }

        static string Clip(string s) { return s.Length > 40 ? s.Substring(0, 40) + "…" : s; }

        /// <summary>Parses exactly one JSON value (RFC 8259); throws JsonException otherwise.</summary>
        public static JsonValue Parse(string json)
        {
            if (json == null) throw new ArgumentNullException("json");
            return new JsonReader(json).ReadDocument();
        }
    }

    /// <summary>Malformed JSON, with where it went wrong.</summary>
    public sealed class JsonException : FormatException
    {
        public int Position { get; private set; }

        public JsonException(string message, int position)
            : base(message + " at offset " + position)
        {
            Position = position;
        }
    }

    /// <summary>
    /// A strict JSON reader: no comments, no trailing commas, no NaN, nesting
    /// at most MaxDepth deep, so that no input can make it recurse without
    /// bound. It reads each character once: no input makes it hang.
    /// </summary>
    sealed class JsonReader
    {
        public const int MaxDepth = 128;

        string s;
        int pos;
        readonly StringBuilder sb = new StringBuilder();

        public JsonReader(string s) { this.s = s; }

        /// <summary>Starts over on another text, keeping the string buffer.</summary>
        public void Reset(string text)
        {
            s = text;
            pos = 0;
        }

        /// <summary>The text being read.</summary>
        public string Text { get { return s; } }

        /// <summary>Where the reader stands in the text.</summary>
        public int Position { get { return pos; } }

        /// <summary>The character at the position, or -1 at the end.</summary>
        public int Peek() { return pos < s.Length ? s[pos] : -1; }

        /// <summary>Steps over c after optional space; throws when c is not there.</summary>
        public void Take(char c, string what)
        {
            SkipSpace();
            if (pos >= s.Length || s[pos] != c) throw Fail(what);
            pos++;
        }

        /// <summary>
        /// Checks one value as strictly as ReadValue reads it, without
        /// building anything and at any depth: it keeps its own stack of the
        /// containers it is in, so that data nested deeper than the tree's
        /// MaxDepth (which herald accepts) is still a message the client can
        /// hand over, with its DataJson, rather than a frame it drops.
        /// No allocation once the stack has grown, but for an error.
        /// </summary>
        public void SkipValue()
        {
            closers.Clear();
            while (true)
            {
                SkipSpace();
                if (pos >= s.Length) throw Fail("unexpected end of input");
                bool opened = false;
                switch (s[pos])
                {
                    case '{':
                        pos++;
                        SkipSpace();
                        if (pos < s.Length && s[pos] == '}') { pos++; break; }
                        closers.Add('}');
                        SkipMemberName();
                        opened = true;
                        break;
                    case '[':
                        pos++;
                        SkipSpace();
                        if (pos < s.Length && s[pos] == ']') { pos++; break; }
                        closers.Add(']');
                        opened = true;
                        break;
                    case '"': ScanString(); break;
                    case 't': Expect("true"); break;
                    case 'f': Expect("false"); break;
                    case 'n': Expect("null"); break;
                    default: ReadNumber(); break;
                }
                if (opened) continue;
                // After a value: close what ends here, or go on to the next item.
                while (true)
                {
                    if (closers.Count == 0) return;
                    char closer = closers[closers.Count - 1];
                    SkipSpace();
                    if (pos >= s.Length) throw Fail(closer == '}' ? "unexpected end of input in an object" : "unexpected end of input in an array");
                    char c = s[pos++];
                    if (c == closer)
                    {
                        closers.RemoveAt(closers.Count - 1);
                        continue;
                    }
                    if (c != ',') { pos--; throw Fail(closer == '}' ? "expected ',' or '}'" : "expected ',' or ']'"); }
                    if (closer == '}') SkipMemberName();
                    break;
                }
            }
        }

        readonly List<char> closers = new List<char>();

        void SkipMemberName()
        {
            SkipSpace();
            if (pos >= s.Length || s[pos] != '"') throw Fail("expected a member name");
            ScanString();
            SkipSpace();
            if (pos >= s.Length || s[pos] != ':') throw Fail("expected ':'");
            pos++;
        }

        /// <summary>
        /// Checks the string at the position and steps over it; returns
        /// whether it has escapes (without any, its text is the span between
        /// the quotes).
        /// </summary>
        public bool ScanString()
        {
            pos++; // opening quote
            bool escaped = false;
            while (true)
            {
                if (pos >= s.Length) throw Fail("unterminated string");
                char c = s[pos++];
                if (c == '"') return escaped;
                if (c < 0x20) { pos--; throw Fail("control character in a string"); }
                if (c != '\\') continue;
                escaped = true;
                if (pos >= s.Length) throw Fail("unterminated escape");
                switch (s[pos++])
                {
                    case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't': break;
                    case 'u': ReadHex4(); break;
                    default: pos--; throw Fail("invalid escape");
                }
            }
        }

        /// <summary>Decodes the string that starts at the position (its escapes too).</summary>
        public string ReadStringAt() { return ReadString(); }

        /// <summary>Moves the position back to start, to read again what was scanned.</summary>
        public void Seek(int start) { pos = start; }

        /// <summary>Steps over spaces; true when the text ended.</summary>
        public bool AtEnd()
        {
            SkipSpace();
            return pos >= s.Length;
        }

        public JsonException Error(string what) { return Fail(what); }

        public JsonValue ReadDocument()
        {
            SkipSpace();
            var v = ReadValue(0);
            SkipSpace();
            if (pos != s.Length) throw Fail("unexpected text after the value");
            return v;
        }

        JsonException Fail(string what) { return new JsonException(what, pos); }

        public void SkipSpace()
        {
            while (pos < s.Length)
            {
                char c = s[pos];
                if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
                pos++;
            }
        }

        JsonValue ReadValue(int depth)
        {
            if (depth >= MaxDepth) throw Fail("nested deeper than " + MaxDepth);
            if (pos >= s.Length) throw Fail("unexpected end of input");
            int start = pos;
            switch (s[pos])
            {
                case '{': return ReadObject(depth);
                case '[': return ReadArray(depth);
                case '"':
                    var str = ReadString();
                    return new JsonValue(JsonKind.String, s, start, pos - start, str, false, null, null);
                case 't': Expect("true"); return new JsonValue(JsonKind.Bool, s, start, 4, null, true, null, null);
                case 'f': Expect("false"); return new JsonValue(JsonKind.Bool, s, start, 5, null, false, null, null);
                case 'n': Expect("null"); return new JsonValue(JsonKind.Null, s, start, 4, null, false, null, null);
                default:
                    ReadNumber();
                    return new JsonValue(JsonKind.Number, s, start, pos - start, null, false, null, null);
            }
        }

        void Expect(string word)
        {
            if (string.CompareOrdinal(s, pos, word, 0, word.Length) != 0) throw Fail("invalid literal");
            pos += word.Length;
        }

        JsonValue ReadObject(int depth)
        {
            int start = pos;
            pos++; // {
            var members = new List<KeyValuePair<string, JsonValue>>();
            SkipSpace();
            if (pos < s.Length && s[pos] == '}')
            {
                pos++;
                return new JsonValue(JsonKind.Object, s, start, pos - start, null, false, null, members);
            }
            while (true)
            {
                SkipSpace();
                if (pos >= s.Length || s[pos] != '"') throw Fail("expected a member name");
                var name = ReadString();
                SkipSpace();
                if (pos >= s.Length || s[pos] != ':') throw Fail("expected ':'");
                pos++;
                SkipSpace();
                members.Add(new KeyValuePair<string, JsonValue>(name, ReadValue(depth + 1)));
                SkipSpace();
                if (pos >= s.Length) throw Fail("unexpected end of input in an object");
                char c = s[pos++];
                if (c == '}') break;
                if (c != ',') { pos--; throw Fail("expected ',' or '}'"); }
            }
            return new JsonValue(JsonKind.Object, s, start, pos - start, null, false, null, members);
        }

        JsonValue ReadArray(int depth)
        {
            int start = pos;
            pos++; // [
            var items = new List<JsonValue>();
            SkipSpace();
            if (pos < s.Length && s[pos] == ']')
            {
                pos++;
                return new JsonValue(JsonKind.Array, s, start, pos - start, null, false, items.ToArray(), null);
            }
            while (true)
            {
                SkipSpace();
                items.Add(ReadValue(depth + 1));
                SkipSpace();
                if (pos >= s.Length) throw Fail("unexpected end of input in an array");
                char c = s[pos++];
                if (c == ']') break;
                if (c != ',') { pos--; throw Fail("expected ',' or ']'"); }
            }
            return new JsonValue(JsonKind.Array, s, start, pos - start, null, false, items.ToArray(), null);
        }

        string ReadString()
        {
            pos++; // opening quote
            sb.Length = 0;
            while (true)
            {
                if (pos >= s.Length) throw Fail("unterminated string");
                char c = s[pos++];
                if (c == '"') return sb.ToString();
                if (c < 0x20) { pos--; throw Fail("control character in a string"); }
                if (c != '\\') { sb.Append(c); continue; }
                if (pos >= s.Length) throw Fail("unterminated escape");
                char e = s[pos++];
                switch (e)
                {
                    case '"': sb.Append('"'); break;
                    case '\\': sb.Append('\\'); break;
                    case '/': sb.Append('/'); break;
                    case 'b': sb.Append('\b'); break;
                    case 'f': sb.Append('\f'); break;
                    case 'n': sb.Append('\n'); break;
                    case 'r': sb.Append('\r'); break;
                    case 't': sb.Append('\t'); break;
                    case 'u': sb.Append((char)ReadHex4()); break;
                    default: pos--; throw Fail("invalid escape");
                }
            }
        }

        int ReadHex4()
        {
            if (pos + 4 > s.Length) throw Fail("short \\u escape");
            int v = 0;
            for (int i = 0; i < 4; i++)
            {
                char c = s[pos++];
                int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
                if (d < 0) { pos--; throw Fail("invalid \\u escape"); }
                v = v * 16 + d;
            }
            return v;
        }

        void ReadNumber()
        {
            int start = pos;
            if (pos < s.Length && s[pos] == '-') pos++;
            if (pos >= s.Length) throw Fail("invalid number");
            if (s[pos] == '0') pos++;
            else if (s[pos] >= '1' && s[pos] <= '9') { while (pos < s.Length && char.IsDigit(s[pos]) && s[pos] < 128) pos++; }
            else throw Fail(pos == start ? "unexpected character" : "invalid number");
            if (pos < s.Length && s[pos] == '.')
            {
                pos++;
                if (!Digits()) throw Fail("invalid number: no digits after '.'");
            }
            if (pos < s.Length && (s[pos] == 'e' || s[pos] == 'E'))
            {
                pos++;
                if (pos < s.Length && (s[pos] == '+' || s[pos] == '-')) pos++;
                if (!Digits()) throw Fail("invalid number: no digits in the exponent");
            }
        }

        bool Digits()
        {
            int start = pos;
            while (pos < s.Length && s[pos] >= '0' && s[pos] <= '9') pos++;
            return pos > start;
        }
    }

    /// <summary>Writes JSON strings.</summary>
    public static class JsonWriter
    {
        /// <summary>s as a JSON string literal, quotes included.</summary>
        public static string Quote(string s)
        {
            var sb = new StringBuilder(s.Length + 2);
            sb.Append('"');
            foreach (char c in s)
            {
                switch (c)
                {
                    case '"': sb.Append("\\\""); break;
                    case '\\': sb.Append("\\\\"); break;
                    case '\n': sb.Append("\\n"); break;
                    case '\r': sb.Append("\\r"); break;
                    case '\t': sb.Append("\\t"); break;
                    default:
                        if (c < 0x20) sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                        else sb.Append(c);
                        break;
                }
            }
            return sb.Append('"').ToString();
        }
    }
}
