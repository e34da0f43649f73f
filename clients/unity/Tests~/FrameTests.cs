// The frame reader against a reading of the same frame through the JSON
// tree (what the client did before it read frames without one), and what
// reading a frame allocates.
using System;
using System.Collections.Generic;
using System.Text;
using Herald;

static class FrameTests
{
    public static void Add(List<KeyValuePair<string, Action>> tests)
    {
        tests.Add(new KeyValuePair<string, Action>("frames: read without a tree, every frame reads as through the tree", ReadsAsTheTreeDoes));
        tests.Add(new KeyValuePair<string, Action>("frames: random bytes read as through the tree, never hang or throw", RandomFramesReadAsTheTreeDoes));
        tests.Add(new KeyValuePair<string, Action>("frames: Data is parsed when first read, DataJson alone never builds it", DataIsLazy));
        tests.Add(new KeyValuePair<string, Action>("frames: the bytes allocated per received frame stay within the budget", AllocationBudget));
    }

    static readonly string[] Frames =
    {
        "{\"id\":\"1733140000000-0\",\"key\":\"player-42\",\"data\":{\"item\":\"Sword\",\"qty\":1},\"ts\":1733140000000}",
        " { \"data\" : [1, 2, {\"a\":null}] , \"id\" : \"m1\" , \"topic\" : \"news\" } ",
        "{\"id\":\"7-1\",\"data\":\"caf\\u00e9 \\\"q\\\"\",\"key\":\"k\\u0031\",\"ts\":-5}",
        "{\"id\":\"a\\nb\",\"data\":true,\"ts\":1.5e3}",
        "{\"id\":\"1-0\",\"data\":1,\"ts\":99999999999999999999}",
        "{\"id\":\"1-0\",\"data\":-1e999,\"ts\":1e999}",          // beyond a double: Mono's double.Parse threw
        "{\"id\":\"1-0\",\"data\":1,\"id\":\"2-0\",\"data\":2}",     // the first of a name wins
        "{\"id\":1,\"data\":1}",                                      // id not a string
        "{\"id\":\"1-0\",\"key\":5,\"topic\":null,\"data\":{}}",       // key, topic not strings
        "{\"id\":\"1-0\",\"ts\":\"soon\",\"data\":0}",                 // ts not a number
        "{\"i\\u0064\":\"1-0\",\"data\":0}",                           // an escaped name
        "{\"type\":\"pong\"}",
        "{\"type\":\"pong\",\"data\":[}",                              // a control frame is checked too
        "{}",
        "[1,2,3]",
        "\"text\"",
        "{\"id\":\"1-0\",\"key\":\"u1\",\"data\":",
        "not json at all",
        "{\"id\":\"m1\",\"key\":\"u1\"}",
        "{\"id\":\"2-0\",\"key\":\"u1\",\"data\":1,}",
        "{\"id\":\"3-0\",\"data\":\"\u0001\"}",
        "{\"id\":\"3-0\",\"data\":1} x",
        "{\"id\":\"3-0\",\"data\":1}}",
        "{\"id\":\"3-0\" \"data\":1}",
        "{\"id\":\"3-0\",\"data\":01}",
        "{\"id\":\"3-0\",\"data\":\"\\x\"}",
        "{\"id\":\"3-0\",\"data\":\"\\u12\"}",
        "",
        "   ",
    };

    /// <summary>What the frame says, read through JsonValue.Parse as the client did before.</summary>
    static string ThroughTheTree(string text)
    {
        JsonValue v;
        try { v = JsonValue.Parse(text); }
        catch (JsonException) { return "malformed: not JSON"; }
        if (v.Kind != JsonKind.Object) return "malformed: not an object";
        if (v["type"] != null) return "control";
        var id = v["id"];
        var data = v["data"];
        if (id == null || id.AsString() == null || data == null) return "malformed: lacks id or data";
        var key = v["key"];
        var topic = v["topic"];
        var ts = v["ts"];
        return Describe(id.AsString(), key != null ? key.AsString() : null, topic != null ? topic.AsString() : null,
            ts != null && ts.Kind == JsonKind.Number ? ts.AsLong() : 0, data.RawJson);
    }

    static string WithTheReader(FrameReader r, string text)
    {
        HeraldMessage m;
        string error;
        switch (r.Read(text, out m, out error))
        {
            case FrameKind.Control: return "control";
            case FrameKind.Malformed:
                if (error.Contains("not JSON")) return "malformed: not JSON";
                if (error.Contains("not a JSON object")) return "malformed: not an object";
                return "malformed: lacks id or data";
        }
        return Describe(m.Id, m.Key, m.Topic, m.Timestamp, m.DataJson);
    }

    static string Describe(string id, string key, string topic, long ts, string data)
    {
        return "message id=" + id + " key=" + (key ?? "(null)") + " topic=" + (topic ?? "(null)") + " ts=" + ts + " data=" + data;
    }

    static void ReadsAsTheTreeDoes()
    {
        var r = new FrameReader();
        foreach (var f in Frames)
            Assert.Equal(ThroughTheTree(f), WithTheReader(r, f), "reading " + f);
        // The deep nesting a hostile server sends: refused, without a stack overflow.
        Assert.Equal("malformed: not JSON", WithTheReader(r, new string('[', 100000)), "100000 ['s");
        Assert.Equal("malformed: not JSON", WithTheReader(r, "{\"id\":\"1-0\",\"data\":" + new string('{', 100000)), "100000 {'s in data");
    }

    static void RandomFramesReadAsTheTreeDoes()
    {
        var random = new Random(22);
        var r = new FrameReader();
        const string alphabet = "{}[]\":,\\ 0123456789-.eE+tfnrulasidkeyptopicdatats\u00e9\u0001";
        for (int i = 0; i < 20000; i++)
        {
            string f;
            if (i % 2 == 0)
            {
                // A good frame with a few characters changed.
                var chars = Frames[random.Next(6)].ToCharArray();
                for (int k = random.Next(1, 4); k > 0; k--) chars[random.Next(chars.Length)] = alphabet[random.Next(alphabet.Length)];
                f = new string(chars);
            }
            else
            {
                var sb = new StringBuilder();
                for (int k = random.Next(40); k > 0; k--) sb.Append(alphabet[random.Next(alphabet.Length)]);
                f = sb.ToString();
            }
            Assert.Equal(ThroughTheTree(f), WithTheReader(r, f), "reading " + f);
        }
    }

    static void DataIsLazy()
    {
        var r = new FrameReader();
        HeraldMessage m;
        string error;
        r.Read("{\"id\":\"1-0\",\"key\":\"k\",\"data\":{\"item\":\"Sword\",\"qty\":2}}", out m, out error);
        Assert.Equal("{\"item\":\"Sword\",\"qty\":2}", m.DataJson, "DataJson");
        long before = GC.GetAllocatedBytesForCurrentThread();
        var d = m.Data;
        Assert.True(GC.GetAllocatedBytesForCurrentThread() > before, "reading Data builds the tree then");
        Assert.True(ReferenceEquals(d, m.Data), "and keeps it");
        Assert.Equal("Sword", d["item"].AsString(), "Data[item]");
        Assert.Equal(2L, d["qty"].AsLong(), "Data[qty]");
        r.Read("{\"id\":\"2-0\",\"key\":\"k\",\"data\":1}", out m, out error);
        Assert.True(ReferenceEquals(m.Key, r.Read("{\"id\":\"3-0\",\"key\":\"k\",\"data\":1}", out m, out error) == FrameKind.Message ? m.Key : null), "the same key is one string");
    }

    static string Nested()
    {
        var sb = new StringBuilder("{\"id\":\"1733140000000-7\",\"key\":\"player-42\",\"data\":{\"inventory\":[");
        for (int i = 0; i < 12; i++)
        {
            if (i > 0) sb.Append(',');
            sb.Append("{\"item\":\"Sword of the North ").Append(i).Append("\",\"qty\":").Append(i).Append(",\"tags\":[\"rare\",\"gift\"],\"stats\":{\"atk\":12,\"def\":3.5}}");
        }
        return sb.Append("],\"note\":\"caf\\u00e9\"},\"ts\":1733140000000}").ToString();
    }

    /// <summary>What a string of n characters costs on Mono's heap: header, length, the UTF-16 characters and a terminator, in 8-byte units.</summary>
    static long StringBytes(int n) { return (22 + 2L * n + 7) / 8 * 8; }

    // The budget per received frame: the strings the client must hand the
    // app — the frame as decoded (the transport's one string), its id and
    // DataJson — plus 128 B for the HeraldMessage and nothing else; a pong,
    // its string alone. Reading Data adds the tree, at most 24 B per
    // character of DataJson and 64 B (a JsonValue of ~64 B per value and a string per
    // member name: the 1.2 K frame below has one value per ~4 characters).
    // Figures before this reader (0.1.0's receive buffers and tree) are in
    // the package README.
    static void AllocationBudget()
    {
        var cases = new[]
        {
            new { Name = "pong", Frame = "{\"type\":\"pong\"}", ReadData = false },
            new { Name = "93-char item", Frame = Frames[0], ReadData = false },
            new { Name = "93-char item, Data read", Frame = Frames[0], ReadData = true },
            new { Name = "1.2K nested", Frame = Nested(), ReadData = false },
            new { Name = "1.2K nested, Data read", Frame = Nested(), ReadData = true },
        };
        foreach (var c in cases)
        {
            var bytes = Encoding.UTF8.GetBytes(c.Frame);
            var r = new FrameReader();
            HeraldMessage m = null;
            string error;
            const int warm = 200, n = 2000;
            long start = 0;
            for (int i = 0; i < warm + n; i++)
            {
                if (i == warm) start = GC.GetAllocatedBytesForCurrentThread();
                var text = Encoding.UTF8.GetString(bytes, 0, bytes.Length); // the transport's decode
                r.Read(text, out m, out error);
                if (c.ReadData && m.Data == null) throw new Exception("no data");
            }
            long per = (GC.GetAllocatedBytesForCurrentThread() - start) / n;
            long budget = StringBytes(c.Frame.Length);
            if (m != null)
            {
                budget += StringBytes(m.Id.Length) + StringBytes(m.DataJson.Length) + 128;
                if (c.ReadData) budget += 24L * m.DataJson.Length + 64;
            }
            Console.WriteLine("FIGURE alloc " + c.Name + " (" + c.Frame.Length + " chars): " + per + " B/frame, budget " + budget);
            Assert.True(per <= budget, c.Name + ": " + per + " B per frame, over the budget of " + budget);
        }
    }
}
