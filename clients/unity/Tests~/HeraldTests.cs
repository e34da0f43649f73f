// The test program of the C# client: unit tests of its parts, then stories
// against real herald nodes (NodeTests.cs). Prints "N passed, M failed".
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using Herald;

static class Program
{
    static int passed, failed;

    static int Main()
    {
        var tests = new List<KeyValuePair<string, Action>>();
        UnitTests.Add(tests);
        FrameTests.Add(tests);
        NodeTests.Add(tests);
        foreach (var t in tests)
        {
            var sw = Stopwatch.StartNew();
            try
            {
                t.Value();
                passed++;
                Console.WriteLine("PASS {0} ({1} ms)", t.Key, sw.ElapsedMilliseconds);
            }
            catch (Exception e)
            {
                failed++;
                Console.WriteLine("FAIL {0} ({1} ms): {2}", t.Key, sw.ElapsedMilliseconds, e);
            }
        }
        Console.WriteLine("{0} passed, {1} failed", passed, failed);
        return failed == 0 ? 0 : 1;
    }
}

static class Assert
{
    public static void True(bool ok, string what)
    {
        if (!ok) throw new Exception(what);
    }

    public static void Equal<T>(T want, T got, string what)
    {
        if (!EqualityComparer<T>.Default.Equals(want, got))
            throw new Exception(what + ": got " + got + ", want " + want);
    }

    public static void Throws<E>(Action a, string what) where E : Exception
    {
        try { a(); }
        catch (E) { return; }
        catch (Exception e) { throw new Exception(what + ": threw " + e.GetType().Name + ", want " + typeof(E).Name); }
        throw new Exception(what + ": did not throw");
    }
}

static class UnitTests
{
    public static void Add(List<KeyValuePair<string, Action>> tests)
    {
        tests.Add(new KeyValuePair<string, Action>("JSON: well-formed values parse into a tree that keeps its text", JsonParses));
        tests.Add(new KeyValuePair<string, Action>("JSON: malformed input throws JsonException at once", JsonRefusesMalformed));
        tests.Add(new KeyValuePair<string, Action>("JSON: random bytes never hang or escape as another exception", JsonFuzz));
        tests.Add(new KeyValuePair<string, Action>("backoff: full jitter within doubling bounds, capped, reset", BackoffBounds));
        tests.Add(new KeyValuePair<string, Action>("dedupe window: repeats are caught while in the window", DedupeWindowHolds));
        tests.Add(new KeyValuePair<string, Action>("stored ids parse and order; other ids do not parse", StoredIds));
    }

    static void JsonParses()
    {
        var v = JsonValue.Parse(" {\"id\":\"1-0\",\"data\":{\"item\":\"Sword\",\"qty\":1,\"tags\":[true,null,-2.5e3],\"s\":\"a\\\"b\\u00e9\\n\"}} ");
        Assert.Equal(JsonKind.Object, v.Kind, "kind");
        var data = v["data"];
        Assert.Equal("{\"item\":\"Sword\",\"qty\":1,\"tags\":[true,null,-2.5e3],\"s\":\"a\\\"b\\u00e9\\n\"}", data.RawJson, "raw text kept");
        Assert.Equal("Sword", data["item"].AsString(), "string member");
        Assert.Equal(1L, data["qty"].AsLong(), "number");
        Assert.Equal(3, data["tags"].Count, "array length");
        Assert.True(data["tags"][0].AsBool() && data["tags"][1].IsNull, "true, null");
        Assert.Equal(-2500.0, data["tags"][2].AsDouble(), "exponent");
        Assert.Equal("a\"b\u00e9\n", data["s"].AsString(), "escapes");
        Assert.True(data["missing"] == null, "missing member is null");
        Assert.Equal("item,qty,tags,s", string.Join(",", data.Keys.ToArray()), "member order");
        Assert.Equal("\"x\\\"\\n\\u0001\"", JsonWriter.Quote("x\"\n\u0001"), "writer escapes");
    }

    static void JsonRefusesMalformed()
    {
        var cases = new[] {
            "", " ", "{", "}", "[", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "'x'", "\"abc", "\"\\x\"", "\"\\u12\"",
            "tru", "nul", "01", "-", "1.", "1e", "+1", ".5", "NaN", "[1 2]", "{} {}", "\"a\u0001\"", "/*c*/1",
            new string('[', 1000), new string('[', 129) + new string(']', 129),
        };
        foreach (var c in cases)
            Assert.Throws<JsonException>(() => JsonValue.Parse(c), "parsing " + (c.Length > 20 ? c.Substring(0, 20) + "…" : c));
        var deep = new string('[', 128) + new string(']', 128);
        Assert.Equal(JsonKind.Array, JsonValue.Parse(deep).Kind, "128 levels are allowed");
    }

    static void JsonFuzz()
    {
        var rnd = new Random(7);
        const string alphabet = "{}[],:\"\\ntrufalse0123456789.-+eE \u00e9\u0001";
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < 20000; i++)
        {
            var chars = new char[rnd.Next(0, 40)];
            for (int j = 0; j < chars.Length; j++) chars[j] = alphabet[rnd.Next(alphabet.Length)];
            try { JsonValue.Parse(new string(chars)); }
            catch (JsonException) { }
        }
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(20), "20,000 random inputs took " + sw.Elapsed);
    }

    static void BackoffBounds()
    {
        var b = new Backoff(TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(2), new Random(1));
        double[] caps = { 100, 200, 400, 800, 1600, 2000, 2000 };
        foreach (var cap in caps)
        {
            Assert.Equal(cap, b.Ceiling.TotalMilliseconds, "ceiling");
            var w = b.Next().TotalMilliseconds;
            Assert.True(w >= 0 && w <= cap, "wait " + w + " outside [0, " + cap + "]");
        }
        var spread = new Backoff(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1), new Random(2));
        var waits = Enumerable.Range(0, 200).Select(_ => spread.Next().TotalMilliseconds).ToArray();
        Assert.True(waits.Min() < 100 && waits.Max() > 900, "full jitter spreads over [0, cap]");
        b.Reset();
        Assert.Equal(100.0, b.Ceiling.TotalMilliseconds, "reset");
        Assert.Throws<ArgumentException>(() => new Backoff(TimeSpan.Zero, TimeSpan.FromSeconds(1), null), "zero min");
    }

    static void DedupeWindowHolds()
    {
        var w = new DedupeWindow(3);
        Assert.True(w.Add("a") && w.Add("b") && w.Add("c"), "new ids");
        Assert.True(!w.Add("a") && !w.Add("c"), "repeats within the window");
        Assert.True(w.Add("d"), "d");
        Assert.True(w.Add("a"), "a left the window after three newer ids");
        Assert.Equal(3, w.Count, "bounded");
    }

    static void StoredIds()
    {
        StoredId a, b;
        bool okA = StoredId.TryParse("1795723200000-0", out a);
        bool okB = StoredId.TryParse("1795723200000-1", out b);
        Assert.True(okA && okB, "parse");
        Assert.True(b.After(a) && !a.After(b) && !a.After(a), "order");
        Assert.Equal("1795723200000-1", b.ToString(), "format");
        foreach (var bad in new[] { "", "-", "1-", "-1", "a-1", "mwxz-1tk3-2", "1-2-3", "18446744073709551616-0" })
            Assert.True(!StoredId.TryParse(bad, out a), bad + " parsed");
    }
}
