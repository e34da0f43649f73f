// Stories against real herald nodes that the Go test started (unity_test.go).
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using Herald;

static class NodeTests
{
    public static void Add(List<KeyValuePair<string, Action>> tests)
    {
        tests.Add(new KeyValuePair<string, Action>("a send through another node arrives with the documented fields", SendArrivesWithItsFields));
        tests.Add(new KeyValuePair<string, Action>("kill -9 of the client's node: it resumes on another and gets what was stored meanwhile, once, in order", ResumesAfterKill));
        tests.Add(new KeyValuePair<string, Action>("a 4002 close makes it fetch a new token and go on", TokenExpiryFetchesANewToken));
        tests.Add(new KeyValuePair<string, Action>("a refused token stops it with the reason", RefusedTokenStops));
        tests.Add(new KeyValuePair<string, Action>("its acks reach a sender waiting with wait acked", AcksReachAWaitingSender));
        tests.Add(new KeyValuePair<string, Action>("the dead-connection detector moves on when the node stops answering (SIGSTOP)", DeadConnectionIsReplaced));
        tests.Add(new KeyValuePair<string, Action>("raw mode hands over the bare data", RawMode));
        tests.Add(new KeyValuePair<string, Action>("malformed frames from a server are reported, not fatal", MalformedFrames));
        tests.Add(new KeyValuePair<string, Action>("an operator's disconnect (4001) stops it for good", DisconnectIsFinal));
        tests.Add(new KeyValuePair<string, Action>("events run only on the thread that dispatches them", EventsWaitForDispatch));
    }

    static string Env(string name)
    {
        var v = Environment.GetEnvironmentVariable(name);
        if (string.IsNullOrEmpty(v))
            throw new Exception(name + " is not set: run these tests with `go test ./clients/unity/...`, which starts the nodes");
        return v;
    }

    static string Ws(string httpUrl) { return "ws" + httpUrl.Substring(4); }

    /// <summary>A client under test and what it reported.</summary>
    sealed class Probe : IDisposable
    {
        public readonly HeraldClient Client;
        public readonly List<HeraldMessage> Messages = new List<HeraldMessage>();
        public readonly List<HeraldDisconnect> Disconnects = new List<HeraldDisconnect>();
        public readonly List<Exception> Errors = new List<Exception>();
        public readonly List<string> Connects = new List<string>();
        public int DispatchThread = -1, EventThread = -1;

        public Probe(HeraldOptions o)
        {
            if (o.MinBackoff == TimeSpan.FromMilliseconds(200)) o.MinBackoff = TimeSpan.FromMilliseconds(50);
            if (o.MaxBackoff == TimeSpan.FromSeconds(30)) o.MaxBackoff = TimeSpan.FromSeconds(1);
            Client = new HeraldClient(o);
            Client.Message += m => { Messages.Add(m); EventThread = Thread.CurrentThread.ManagedThreadId; };
            Client.Disconnected += d => Disconnects.Add(d);
            Client.Error += e => Errors.Add(e);
            Client.Connected += u => Connects.Add(u);
            Client.Start();
        }

        /// <summary>Dispatches events on this thread until cond holds, or fails after timeout.</summary>
        public void Until(Func<bool> cond, string what, double seconds = 10)
        {
            var sw = Stopwatch.StartNew();
            DispatchThread = Thread.CurrentThread.ManagedThreadId;
            while (true)
            {
                Client.Dispatch();
                if (cond()) return;
                if (sw.Elapsed.TotalSeconds > seconds)
                    throw new Exception("timed out waiting for " + what + "; messages: [" +
                        string.Join(", ", Messages.Select(m => m.DataJson).ToArray()) + "], disconnects: [" +
                        string.Join(", ", Disconnects.Select(d => d.ToString()).ToArray()) + "], errors: " + Errors.Count);
                Thread.Sleep(10);
            }
        }

        /// <summary>Dispatches for a while, for anything that should not come.</summary>
        public void Settle(int ms)
        {
            var sw = Stopwatch.StartNew();
            while (sw.ElapsedMilliseconds < ms) { Client.Dispatch(); Thread.Sleep(10); }
        }

        public void Dispose() { Client.Dispose(); }
    }

    static KeyValuePair<int, string> Http(string method, string url, string body, string contentType = "application/json")
    {
        var req = (HttpWebRequest)WebRequest.Create(url);
        req.Method = method;
        req.Timeout = 15000;
        if (body != null)
        {
            var bytes = Encoding.UTF8.GetBytes(body);
            req.ContentType = contentType;
            using (var s = req.GetRequestStream()) s.Write(bytes, 0, bytes.Length);
        }
        HttpWebResponse resp;
        try { resp = (HttpWebResponse)req.GetResponse(); }
        catch (WebException e)
        {
            resp = e.Response as HttpWebResponse;
            if (resp == null) throw;
        }
        using (resp)
        using (var r = new StreamReader(resp.GetResponseStream()))
            return new KeyValuePair<int, string>((int)resp.StatusCode, r.ReadToEnd());
    }

    static JsonValue Send(string node, string json)
    {
        var r = Http("POST", node + "/v1/send", json);
        Assert.Equal(200, r.Key, "send " + json + ": " + r.Value);
        return JsonValue.Parse(r.Value);
    }

    static void Signal(string signal, string pidVar)
    {
        using (var p = Process.Start(new ProcessStartInfo("kill", "-" + signal + " " + Env(pidVar)) { UseShellExecute = false }))
            p.WaitForExit();
    }

    static string B64(byte[] b) { return Convert.ToBase64String(b).TrimEnd('=').Replace('+', '-').Replace('/', '_'); }

    /// <summary>An HS256 connection token, as the game's backend would mint it.</summary>
    static string Token(string key, int seconds, string secret)
    {
        long now = (long)(DateTime.UtcNow - new DateTime(1970, 1, 1, 0, 0, 0, DateTimeKind.Utc)).TotalSeconds;
        var header = B64(Encoding.UTF8.GetBytes("{\"alg\":\"HS256\",\"typ\":\"JWT\"}"));
        var claims = B64(Encoding.UTF8.GetBytes("{\"sub\":" + JsonWriter.Quote(key) + ",\"exp\":" + (now + seconds) + "}"));
        using (var h = new HMACSHA256(Encoding.UTF8.GetBytes(secret)))
            return header + "." + claims + "." + B64(h.ComputeHash(Encoding.UTF8.GetBytes(header + "." + claims)));
    }

    static void SendArrivesWithItsFields()
    {
        using (var c = new Probe(new HeraldOptions { Urls = new[] { Ws(Env("HERALD_A")) }, Key = "u-fields" }))
        {
            c.Until(() => c.Connects.Count == 1, "connected");
            var answer = Send(Env("HERALD_B"), "{\"key\":\"u-fields\",\"data\":{\"item\":\"Sword\",\"qty\":1}}");
            c.Until(() => c.Messages.Count == 1, "the message");
            var m = c.Messages[0];
            Assert.Equal(answer["id"].AsString(), m.Id, "id");
            Assert.Equal("u-fields", m.Key, "key");
            Assert.True(m.Topic == null && !m.IsStored, "no topic, not stored");
            Assert.Equal("Sword", m.Data["item"].AsString(), "data.item");
            Assert.Equal(1L, m.Data["qty"].AsLong(), "data.qty");
            Assert.True(m.Timestamp > 1700000000000, "ts is Unix milliseconds: " + m.Timestamp);
        }
    }

    static void ResumesAfterKill()
    {
        string b = Env("HERALD_B");
        var o = new HeraldOptions { Urls = new[] { Ws(Env("HERALD_K")), Ws(b) }, Key = "u-kill", Topics = new[] { "board" }, DeadAfter = TimeSpan.FromSeconds(3) };
        using (var c = new Probe(o))
        {
            c.Until(() => c.Connects.Count == 1, "connected to k");
            Send(b, "{\"key\":\"u-kill\",\"data\":\"m0\",\"store\":true}");
            c.Until(() => c.Messages.Any(m => m.DataJson == "\"m0\""), "m0 before the kill");
            Signal("9", "HERALD_K_PID");
            for (int i = 1; i <= 5; i++) Send(b, "{\"key\":\"u-kill\",\"data\":\"m" + i + "\",\"store\":true}");
            for (int i = 1; i <= 2; i++) Http("POST", b + "/v1/topics/board", "{\"data\":\"b" + i + "\"}");
            c.Until(() => c.Messages.Any(m => m.DataJson == "\"m5\"") && c.Messages.Any(m => m.DataJson == "\"b2\""), "what was stored meanwhile", 20);
            c.Settle(500);
            var keys = c.Messages.Where(m => m.Topic == null).Select(m => m.DataJson).ToArray();
            Assert.Equal("\"m0\",\"m1\",\"m2\",\"m3\",\"m4\",\"m5\"", string.Join(",", keys), "the key's messages, once, in order");
            var board = c.Messages.Where(m => m.Topic == "board").Select(m => m.DataJson).ToList();
            Assert.True(board.IndexOf("\"b1\"") >= 0 && board.IndexOf("\"b1\"") < board.IndexOf("\"b2\"") && board.Count(x => x == "\"b1\"") == 1,
                "the board's posts after the kill, once, in order: " + string.Join(",", board.ToArray()));
            Assert.Equal(c.Messages.Count, c.Messages.Select(m => m.Id).Distinct().Count(), "no id handed over twice");
            Assert.True(c.Connects.Count >= 2 && c.Connects.Last().StartsWith(Ws(b)), "reconnected to b: " + string.Join(",", c.Connects.ToArray()));
        }
    }

    static void TokenExpiryFetchesANewToken()
    {
        string s = Env("HERALD_S"), secret = Env("HERALD_SECRET");
        int calls = 0;
        var o = new HeraldOptions
        {
            Urls = new[] { Ws(s) },
            GetToken = ct => { Interlocked.Increment(ref calls); return Task.FromResult(Token("u-token", 2, secret)); },
        };
        using (var c = new Probe(o))
        {
            c.Until(() => c.Disconnects.Any(d => d.Code == 4002), "the token to expire (4002)");
            c.Until(() => c.Connects.Count >= 2, "a connection with a fresh token");
            Assert.True(calls >= 2, "GetToken called " + calls + " times");
            Assert.True(!c.Disconnects.Any(d => d.Final), "not stopped");
            Send(s, "{\"key\":\"u-token\",\"data\":\"still here\"}");
            c.Until(() => c.Messages.Any(m => m.DataJson == "\"still here\""), "a message on the new connection");
        }
    }

    static void RefusedTokenStops()
    {
        int calls = 0;
        var o = new HeraldOptions
        {
            Urls = new[] { Ws(Env("HERALD_S")) },
            GetToken = ct => { Interlocked.Increment(ref calls); return Task.FromResult(Token("u-bad", 60, "not-the-secret-not-the-secret-not-the")); },
        };
        using (var c = new Probe(o))
        {
            c.Until(() => c.Disconnects.Any(d => d.Final), "the client to stop");
            var last = c.Disconnects.Last();
            Assert.Equal(401, last.Code, "code");
            Assert.True(last.Reason.Contains("token was refused") && last.Reason.Contains("invalid_token"), "reason: " + last.Reason);
            Assert.Equal(2, calls, "a fresh token was tried once before giving up");
            Assert.True(c.Client.Stopped, "Stopped");
        }
    }

    static void AcksReachAWaitingSender()
    {
        using (var c = new Probe(new HeraldOptions { Urls = new[] { Ws(Env("HERALD_A")) }, Key = "u-ack" }))
        {
            c.Until(() => c.Connects.Count == 1, "connected");
            // The client acks from its own thread: the sender's answer does
            // not wait for the app to dispatch.
            var answer = Send(Env("HERALD_B"), "{\"key\":\"u-ack\",\"data\":{\"item\":\"Shield\"},\"wait\":\"acked\",\"timeout_ms\":5000}");
            Assert.Equal("acked", answer["results"]["u-ack"]["status"].AsString(), "status: " + answer.RawJson);
            c.Until(() => c.Messages.Count == 1 && c.Messages[0].IsStored, "the stored message");
        }
    }

    static void DeadConnectionIsReplaced()
    {
        string p = Env("HERALD_P"), b = Env("HERALD_B");
        var o = new HeraldOptions { Urls = new[] { Ws(p), Ws(b) }, Key = "u-pause", DeadAfter = TimeSpan.FromMilliseconds(1500) };
        using (var c = new Probe(o))
        {
            c.Until(() => c.Connects.Count == 1, "connected to p");
            c.Settle(2500); // a live, idle node keeps the connection: its pongs come back
            Assert.Equal(1, c.Connects.Count, "an idle connection to a live node was kept");
            Signal("STOP", "HERALD_P_PID");
            try
            {
                c.Until(() => c.Connects.Count == 2, "a new connection after the node went silent", 10);
                Assert.True(c.Disconnects.Any(d => d.Reason.Contains("no frame")), "the detector ended it");
                Assert.True(c.Connects[1].StartsWith(Ws(b)), "moved to b: " + c.Connects[1]);
            }
            finally
            {
                Signal("CONT", "HERALD_P_PID");
            }
            Send(Env("HERALD_A"), "{\"key\":\"u-pause\",\"data\":\"after the pause\",\"store\":true}");
            c.Until(() => c.Messages.Any(m => m.DataJson == "\"after the pause\""), "a message on b");
        }
    }

    static void RawMode()
    {
        string a = Env("HERALD_A");
        using (var c = new Probe(new HeraldOptions { Urls = new[] { Ws(a) }, Key = "u-raw", Raw = true }))
        {
            c.Until(() => c.Connects.Count == 1, "connected");
            var r = Http("POST", a + "/v1/send?key=u-raw", "hello raw", "text/plain");
            Assert.Equal(200, r.Key, "text send: " + r.Value);
            Send(a, "{\"key\":\"u-raw\",\"data\":{\"a\":1}}");
            c.Until(() => c.Messages.Count == 2, "two raw messages");
            Assert.Equal("hello raw", c.Messages[0].DataJson, "a string's bare text");
            Assert.Equal("{\"a\":1}", c.Messages[1].DataJson, "an object's JSON");
            Assert.True(c.Messages[0].Data == null, "no tree in raw mode");
        }
    }

    static void MalformedFrames()
    {
        using (var c = new Probe(new HeraldOptions { Urls = new[] { Env("HERALD_FAKE") }, Key = "u1" }))
        {
            c.Until(() => c.Messages.Count == 1, "the good message after the junk");
            Assert.Equal("the junk", c.Messages[0].Data["after"].AsString(), "the good message");
            Assert.Equal(7, c.Errors.Count, "each of the 7 bad frames reported");
            Assert.True(c.Errors.All(e => e is FormatException), "reported as FormatException");
            Assert.True(!c.Client.Stopped, "still running");
        }
    }

    static void DisconnectIsFinal()
    {
        string a = Env("HERALD_A");
        using (var c = new Probe(new HeraldOptions { Urls = new[] { Ws(a) }, Key = "u-final" }))
        {
            c.Until(() => c.Connects.Count == 1, "connected");
            Assert.Equal(200, Http("DELETE", a + "/v1/connections/u-final", null).Key, "disconnect");
            c.Until(() => c.Disconnects.Any(d => d.Final), "the client to stop");
            Assert.Equal(4001, c.Disconnects.Last().Code, "close code");
            c.Settle(500);
            Assert.Equal(1, c.Connects.Count, "no reconnect after 4001");
        }
    }

    static void EventsWaitForDispatch()
    {
        using (var c = new Probe(new HeraldOptions { Urls = new[] { Ws(Env("HERALD_A")) }, Key = "u-thread" }))
        {
            c.Until(() => c.Connects.Count == 1, "connected");
            Send(Env("HERALD_A"), "{\"key\":\"u-thread\",\"data\":1}");
            Thread.Sleep(300);
            Assert.Equal(0, c.Messages.Count, "no event ran before Dispatch");
            c.Until(() => c.Messages.Count == 1, "the message");
            Assert.Equal(c.DispatchThread, c.EventThread, "the event ran on the dispatching thread");
        }
    }
}
