namespace Herald
{
    /// <summary>What a frame from the server turned out to be.</summary>
    internal enum FrameKind
    {
        /// <summary>A message for the app.</summary>
        Message,
        /// <summary>A frame with a "type" ({"type":"pong"}): proof of life, nothing for the app.</summary>
        Control,
        /// <summary>Not a frame herald sends; error says why.</summary>
        Malformed,
    }

    /// <summary>
    /// Reads herald's frames into messages in one strict pass that builds no
    /// JSON tree: it checks the whole frame as JsonValue.Parse would, keeps
    /// only where the top-level members it needs are, and makes strings of
    /// those alone. Unity's garbage collector is not generational, so every
    /// allocation per message shows up as a frame hitch: a pong costs
    /// nothing, a message its HeraldMessage, its id and its DataJson, and a
    /// key or topic only when it differs from the previous frame's. Data is
    /// parsed into a tree when the app first reads it.
    ///
    /// One reader per connection loop: it keeps the last key and topic and
    /// its JSON reader's buffer, so it is not for two threads.
    /// </summary>
    internal sealed class FrameReader
    {
        struct Span
        {
            public int Start, End; // the value's text; for a string, quotes included
            public bool Escaped;   // a string with escapes: decode rather than cut
            public bool Set;
        }

        readonly JsonReader json = new JsonReader("");
        string lastKey, lastTopic;

        /// <summary>
        /// Reads one frame. For a Message, m has Id, Key, Topic, Timestamp and
        /// DataJson set (IsStored and Stored are the caller's to decide).
        /// </summary>
        internal FrameKind Read(string text, out HeraldMessage m, out string error)
        {
            m = null;
            error = null;
            Span id = new Span(), key = new Span(), topic = new Span(), ts = new Span(), data = new Span();
            bool typed = false, isObject;
            try
            {
                json.Reset(text);
                json.SkipSpace();
                isObject = json.Peek() == '{';
                if (!isObject)
                    json.SkipValue();
                else
                    ReadMembers(ref id, ref key, ref topic, ref ts, ref data, ref typed);
                if (!json.AtEnd()) throw json.Error("unexpected text after the value");
            }
            catch (JsonException e)
            {
                error = "a frame from the server is not JSON: " + e.Message;
                return FrameKind.Malformed;
            }
            if (!isObject)
            {
                error = "a frame from the server is not a JSON object";
                return FrameKind.Malformed;
            }
            if (typed) return FrameKind.Control;
            if (!id.Set || text[id.Start] != '"' || !data.Set)
            {
                error = "a frame from the server lacks \"id\" or \"data\"";
                return FrameKind.Malformed;
            }
            m = new HeraldMessage();
            m.Id = StringOf(text, id, null);
            m.SetDataJson(text.Substring(data.Start, data.End - data.Start));
            if (key.Set && text[key.Start] == '"') m.Key = lastKey = StringOf(text, key, lastKey);
            if (topic.Set && text[topic.Start] == '"') m.Topic = lastTopic = StringOf(text, topic, lastTopic);
            if (ts.Set) m.Timestamp = LongOf(text, ts);
            return FrameKind.Message;
        }

        void ReadMembers(ref Span id, ref Span key, ref Span topic, ref Span ts, ref Span data, ref bool typed)
        {
            json.Take('{', "expected '{'");
            json.SkipSpace();
            if (json.Peek() == '}')
            {
                json.Take('}', "expected '}'");
                return;
            }
            while (true)
            {
                json.SkipSpace();
                if (json.Peek() != '"') throw json.Error("expected a member name");
                int nameStart = json.Position;
                bool nameEscaped = json.ScanString();
                int nameEnd = json.Position;
                json.Take(':', "expected ':'");
                json.SkipSpace();
                int valueStart = json.Position;
                int first = json.Peek();
                bool escaped = first == '"' ? json.ScanString() : SkipOther();
                var v = new Span { Start = valueStart, End = json.Position, Escaped = escaped, Set = true };
                // An escaped name ("i\u0064") names what its decoding does;
                // no herald node writes one, so only then is it a string.
                string name = nameEscaped ? DecodeAt(nameStart, json.Position) : null;
                // The first member of a name wins, as JsonValue's indexer does.
                var s = json.Text;
                if (Is(s, nameStart, nameEnd, name, "id")) { if (!id.Set) id = v; }
                else if (Is(s, nameStart, nameEnd, name, "data")) { if (!data.Set) data = v; }
                else if (Is(s, nameStart, nameEnd, name, "key")) { if (!key.Set) key = v; }
                else if (Is(s, nameStart, nameEnd, name, "topic")) { if (!topic.Set) topic = v; }
                else if (Is(s, nameStart, nameEnd, name, "ts")) { if (!ts.Set && IsNumberStart(first)) ts = v; }
                else if (Is(s, nameStart, nameEnd, name, "type")) typed = true;
                json.SkipSpace();
                int c = json.Peek();
                if (c == '}') { json.Take('}', "expected '}'"); return; }
                if (c == ',') { json.Take(',', "expected ','"); continue; }
                if (c < 0) throw json.Error("unexpected end of input in an object");
                throw json.Error("expected ',' or '}'");
            }
        }

        bool SkipOther()
        {
            json.SkipValue();
            return false;
        }

        static bool IsNumberStart(int c) { return c == '-' || (c >= '0' && c <= '9'); }

        /// <summary>Whether the quoted name at [start, end) — decoded, when escaped — is want.</summary>
        static bool Is(string s, int start, int end, string decoded, string want)
        {
            if (decoded != null) return decoded == want;
            return end - start - 2 == want.Length && string.CompareOrdinal(s, start + 1, want, 0, want.Length) == 0;
        }

        /// <summary>Decodes the string at start, then goes back to resume, where the reader was.</summary>
        string DecodeAt(int start, int resume)
        {
            json.Seek(start);
            var decoded = json.ReadStringAt();
            json.Seek(resume);
            return decoded;
        }

        /// <summary>The string at span; reuses last when it has the same text.</summary>
        string StringOf(string text, Span v, string last)
        {
            if (v.Escaped)
            {
                json.Seek(v.Start);
                return json.ReadStringAt();
            }
            int start = v.Start + 1, length = v.End - v.Start - 2;
            if (last != null && last.Length == length && string.CompareOrdinal(text, start, last, 0, length) == 0) return last;
            return text.Substring(start, length);
        }

        /// <summary>The number at span as a long (as JsonValue.AsLong reads it), without a substring for an integer.</summary>
        static long LongOf(string text, Span v)
        {
            int i = v.Start;
            bool negative = text[i] == '-';
            if (negative) i++;
            long n = 0;
            for (; i < v.End; i++)
            {
                char c = text[i];
                if (c < '0' || c > '9' || n > (long.MaxValue - 9) / 10)
                    return JsonValue.ParseLong(text.Substring(v.Start, v.End - v.Start));
                n = n * 10 + (c - '0');
            }
            return negative ? -n : n;
        }
    }
}
