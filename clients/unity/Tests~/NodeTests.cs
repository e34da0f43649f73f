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
        TickTests.Add(tests);
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
        tests.Add(new KeyValuePair<string, Action>("without Dispatch nothing is acked: a wait-acked sender gets its timeout, a fresh client gets the message", NoDispatchNoAck));
        tests.Add(new KeyValuePair<string, Action>("a throwing handler: Error, the other handlers ran, not acked; a restarted client gets it; after Reconnect it comes again, the handled ones after it do not", ThrowingHandler));
        tests.Add(new KeyValuePair<string, Action>("Reconnect() during a long backoff connects at once", ReconnectDuringBackoff));
        tests.Add(new KeyValuePair<string, Action>("Pause closes after the grace; Resume keeps an answering connection and replaces a silent one on the same node", PauseAndResume));
        tests.Add(new KeyValuePair<string, Action>("a 429 with Retry-After: the next attempt waits at least that long, on the same node", RetryAfter429));
        tests.Add(new KeyValuePair<string, Action>("a token provider that completes later works, called on the Dispatch thread", TokenCompletesLater));
        tests.Add(new KeyValuePair<string, Action>("an account switch on one client (Disconnect, a token for another key, Connect) hands the new key its older stored messages and acks nothing of them unhandled", AccountSwitch));
        tests.Add(new KeyValuePair<string, Action>("stored data nested deeper than the JSON tree reads is handed over, not dropped and acked past", DeepDataIsHanded));
        tests.Add(new KeyValuePair<string, Action>("Dispose from inside a handler still acks what was handled", DisposeInHandlerAcks));
        tests.Add(new KeyValuePair<string, Action>("an app that stops dispatching holds at most 4096 frames, and every stored message arrives once when it dispatches again", StopsDispatching));
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
            Client.Connect();
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
                    throw new Exception("timed out waiting for " + what + "; " + Messages.Count + " messages, " + Connects.Count + " connects, state " + Client.State + ": [" +
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

    /// <summary>A send on another thread, so that the test can dispatch while a sender waits.</summary>
    static Task<JsonValue> SendAsync(string node, string json) { return Task.Run(() => Send(node, json)); }

    static string Status(JsonValue answer, string key)
    {
        var r = answer["results"];
        return r != null && r[key] != null ? r[key]["status"].AsString() : "(none: " + answer.RawJson + ")";
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
            // Stored ids are unique per stream only: a key's message and a
            // topic's stored in the same millisecond share "<ms>-0".
            Assert.Equal(c.Messages.Count, c.Messages.Select(m => (m.Topic ?? "") + "/" + m.Id).Distinct().Count(), "no id handed over twice in a stream");
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
            // The client acks once Dispatch handed the message over: the
            // sender's answer comes while the app dispatches.
            var answer = SendAsync(Env("HERALD_B"), "{\"key\":\"u-ack\",\"data\":{\"item\":\"Shield\"},\"store\":true,\"wait\":\"acked\",\"timeout_ms\":5000}");
            c.Until(() => answer.IsCompleted, "the sender's answer");
            Assert.Equal("acked", answer.Result["results"]["u-ack"]["status"].AsString(), "status: " + answer.Result.RawJson);
            Assert.True(c.Messages.Count == 1 && c.Messages[0].IsStored, "the stored message");
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

    static void AccountSwitch()
    {
        string s = Env("HERALD_S"), secret = Env("HERALD_SECRET");
        string who = "u-alice";
        for (int i = 0; i < 3; i++) Send(s, "{\"key\":\"u-bob\",\"store\":true,\"data\":\"bob-" + i + "\"}");
        for (int i = 0; i < 3; i++) Send(s, "{\"key\":\"u-alice\",\"store\":true,\"data\":\"alice-" + i + "\"}");
        var o = new HeraldOptions { Urls = new[] { Ws(s) }, GetToken = ct => Task.FromResult(Token(who, 60, secret)) };
        using (var c = new Probe(o))
        {
            c.Until(() => c.Messages.Count(m => m.DataJson.StartsWith("\"alice-")) == 3, "alice's 3 messages");
            c.Client.Disconnect();
            who = "u-bob"; // the player signs out; another signs in on the same device
            c.Client.Connect();
            c.Until(() => c.Messages.Count(m => m.DataJson.StartsWith("\"bob-")) == 3, "bob's 3 older messages, after alice's");
            c.Settle(300);
        }
        // And nothing of bob's was acked past what bob's session handled.
        using (var fresh = new Probe(new HeraldOptions { Urls = new[] { Ws(s) }, GetToken = ct => Task.FromResult(Token("u-bob", 60, secret)), AutoAck = false }))
        {
            fresh.Until(() => fresh.Connects.Count == 1, "connected");
            fresh.Settle(500);
            Assert.Equal(0, fresh.Messages.Count, "bob's messages were acked once bob handled them");
        }
    }

    static void DeepDataIsHanded()
    {
        string a = Env("HERALD_A");
        string deep = new string('[', 200) + "1" + new string(']', 200);
        using (var c = new Probe(new HeraldOptions { Urls = new[] { Ws(a) }, Key = "u-deep" }))
        {
            c.Until(() => c.Connects.Count == 1, "connected");
            Send(a, "{\"key\":\"u-deep\",\"store\":true,\"data\":\"before\"}");
            Send(a, "{\"key\":\"u-deep\",\"store\":true,\"data\":" + deep + "}");
            Send(a, "{\"key\":\"u-deep\",\"store\":true,\"data\":\"after\"}");
            c.Until(() => c.Messages.Count == 3, "all three messages");
            Assert.Equal(deep, c.Messages[1].DataJson, "the deep data, as sent");
            Assert.Throws<JsonException>(() => { var d = c.Messages[1].Data; }, "the tree of data deeper than 128 levels");
            Assert.Equal(0, c.Errors.Count, "no frame dropped as malformed");
        }
    }

    static void DisposeInHandlerAcks()
    {
        string a = Env("HERALD_A");
        var c = new Probe(new HeraldOptions { Urls = new[] { Ws(a) }, Key = "u-dispose" });
        c.Until(() => c.Connects.Count == 1, "connected");
        c.Client.Message += m => { if (m.DataJson == "\"quit\"") c.Client.Dispose(); };
        // Five stored messages while the app is between ticks, so that one
        // Dispatch hands them all; the last one's handler quits.
        for (int i = 0; i < 4; i++) Send(a, "{\"key\":\"u-dispose\",\"store\":true,\"data\":" + i + "}");
        Send(a, "{\"key\":\"u-dispose\",\"store\":true,\"data\":\"quit\"}");
        Thread.Sleep(300);
        c.Until(() => c.Messages.Count == 5 || c.Client.Stopped, "the messages, the last of which quits");
        Thread.Sleep(300);
        using (var fresh = new Probe(new HeraldOptions { Urls = new[] { Ws(a) }, Key = "u-dispose", AutoAck = false }))
        {
            fresh.Until(() => fresh.Connects.Count == 1, "connected");
            fresh.Settle(500);
            Assert.True(fresh.Messages.Count <= 1, "a restarted app got " + fresh.Messages.Count + " messages again; the handled ones were not acked before the close");
        }
    }

    static void StopsDispatching()
    {
        const int plain = 6000, stored = 500;
        using (var c = new Probe(new HeraldOptions { Urls = new[] { Ws(Env("HERALD_A")) }, Key = "u-frozen" }))
        {
            c.Until(() => c.Connects.Count == 1, "connected");
            // While the app's Update is frozen: 6000 plain messages, more
            // than the transport holds, then 500 stored ones (within the
            // key's inbox of 1000).
            for (int sent = 0; sent < plain + stored; sent += 100)
            {
                var items = new StringBuilder("{\"items\":[");
                for (int i = sent; i < sent + 100; i++)
                    items.Append(i > sent ? "," : "").Append(i < plain
                        ? "{\"key\":\"u-frozen\",\"data\":" + i + "}"
                        : "{\"key\":\"u-frozen\",\"store\":true,\"data\":\"s" + i + "\"}");
                var answer = Http("POST", Env("HERALD_A") + "/v1/batch", items.Append("]}").ToString());
                Assert.Equal(200, answer.Key, "batch: " + answer.Value);
                Thread.Sleep(30); // slower than a burst the node's own queue (256) would refuse
            }
            Thread.Sleep(1000); // let the transport read what it will
            c.Client.Dispatch();
            Console.WriteLine("FIGURE frames handed by the first Dispatch after a freeze: " + c.Messages.Count + " (disconnects: " + string.Join(", ", c.Disconnects.Select(d => d.ToString()).ToArray()) + ")");
            // 4096 held, plus the few the transport reads again while this
            // Dispatch drains them; without the bound it is all 6500.
            Assert.True(c.Messages.Count <= 4096 + 256, "one Dispatch after the freeze handed " + c.Messages.Count + " messages: the transport read past its bound");
            Func<int> storedSeen = () => c.Messages.Count(m => m.IsStored);
            c.Until(() => storedSeen() >= stored, "all " + stored + " stored messages", 60);
            c.Settle(300);
            var seen = new HashSet<string>();
            foreach (var m in c.Messages) Assert.True(seen.Add(m.DataJson), "handed twice: " + m.DataJson);
            Assert.Equal(stored, storedSeen(), "every stored message, once");
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

    static void NoDispatchNoAck()
    {
        string a = Env("HERALD_A"), key = "u-nodispatch";
        using (var c = new Probe(new HeraldOptions { Urls = new[] { Ws(a) }, Key = key }))
        {
            c.Until(() => c.Connects.Count == 1, "connected");
            // The app stops calling Dispatch (a frozen frame, a crash to come).
            var answer = Send(Env("HERALD_B"), "{\"key\":\"" + key + "\",\"data\":\"sword\",\"store\":true,\"wait\":\"acked\",\"timeout_ms\":1500}");
            Assert.True(Status(answer, key) != "acked", "answered " + Status(answer, key) + " though no handler ran");
            Console.WriteLine("  a wait-acked sender without Dispatch was answered: " + Status(answer, key));
        }
        using (var fresh = new Probe(new HeraldOptions { Urls = new[] { Ws(a) }, Key = key }))
            fresh.Until(() => fresh.Messages.Any(m => m.DataJson == "\"sword\""), "the purchase for a fresh client");
    }

    static void ThrowingHandler()
    {
        string a = Env("HERALD_A"), b = Env("HERALD_B"), key = "u-throw";
        bool fail = true;
        var second = new List<string>();
        using (var c = new Probe(new HeraldOptions { Urls = new[] { Ws(a) }, Key = key }))
        {
            c.Client.Message += m => { if (fail && m.DataJson == "\"bad\"") throw new InvalidOperationException("the inventory is full"); };
            c.Client.Message += m => second.Add(m.Id);
            c.Until(() => c.Connects.Count == 1, "connected");
            var answer = SendAsync(b, "{\"key\":\"" + key + "\",\"data\":\"bad\",\"store\":true,\"wait\":\"acked\",\"timeout_ms\":2000}");
            c.Until(() => answer.IsCompleted, "the sender's answer");
            Assert.True(Status(answer.Result, key) != "acked", "a message whose handler threw was answered acked");
            var e = c.Errors.OfType<HeraldHandlerException>().Single();
            string bad = e.HeraldMessage.Id;
            Assert.Equal("\"bad\"", e.HeraldMessage.DataJson, "the exception carries the message");
            Assert.True(e.InnerException is InvalidOperationException, "and what the handler threw");
            Assert.True(second.Contains(bad), "the other handler ran");
            string after = Send(b, "{\"key\":\"" + key + "\",\"data\":\"after\",\"store\":true}")["results"][key]["id"].AsString();
            c.Until(() => second.Contains(after), "the next message, handled");

            using (var restarted = new Probe(new HeraldOptions { Urls = new[] { Ws(b) }, Key = key, AutoAck = false }))
                restarted.Until(() => restarted.Messages.Any(m => m.Id == bad), "the failed message for a restarted client");

            fail = false;
            c.Client.Reconnect();
            c.Until(() => second.Count(id => id == bad) == 2, "the failed message again after Reconnect");
            c.Settle(500);
            Assert.Equal(1, second.Count(id => id == after), "the handled message after it is not handed twice");
            var last = SendAsync(b, "{\"key\":\"" + key + "\",\"data\":\"last\",\"store\":true,\"wait\":\"acked\",\"timeout_ms\":5000}");
            c.Until(() => last.IsCompleted, "the last sender's answer");
            Assert.Equal("acked", Status(last.Result, key), "once the failed message was handled, acks go again");
        }
    }

    static void ReconnectDuringBackoff()
    {
        string p = Env("HERALD_P");
        var waitingSince = Stopwatch.StartNew();
        var o = new HeraldOptions
        {
            Urls = new[] { Ws(p) }, Key = "u-backoff", ConnectTimeout = TimeSpan.FromSeconds(1),
            MinBackoff = TimeSpan.FromSeconds(8), MaxBackoff = TimeSpan.FromSeconds(8), Random = new MaxRandom(),
        };
        Signal("STOP", "HERALD_P_PID"); // accepts TCP, answers nothing: the attempt times out
        bool stopped = true;
        try
        {
            using (var c = new Probe(o))
            {
                c.Client.StateChanged += s => { if (s == HeraldState.Waiting) waitingSince.Restart(); };
                c.Until(() => c.Client.State == HeraldState.Waiting, "the first attempt to time out", 10);
                Signal("CONT", "HERALD_P_PID");
                stopped = false;
                c.Settle(200);
                long backoffEndsIn = 7999 - waitingSince.ElapsedMilliseconds;
                var sw = Stopwatch.StartNew();
                c.Client.Reconnect();
                c.Until(() => c.Connects.Count == 1, "Connected after Reconnect", 7);
                Console.WriteLine("FIGURE reconnect-after-Reconnect: " + sw.ElapsedMilliseconds + " ms (the backoff had " + backoffEndsIn + " ms to go)");
                Assert.True(sw.ElapsedMilliseconds < backoffEndsIn, "connected " + sw.ElapsedMilliseconds + " ms after Reconnect, not before the backoff ended");
            }
        }
        finally
        {
            if (stopped) Signal("CONT", "HERALD_P_PID");
        }
    }

    static bool Online(string node, string key)
    {
        var answer = Send(node, "{\"key\":\"" + key + "\",\"data\":\"are you there\"}");
        return answer["online"].RawJson.Contains("\"" + key + "\"");
    }

    static void PauseAndResume()
    {
        string a = Env("HERALD_A"), key = "u-pause2";
        var o = new HeraldOptions { Urls = new[] { Ws(a) }, Key = key, PauseGrace = TimeSpan.FromSeconds(2), ProbeTimeout = TimeSpan.FromSeconds(1) };
        using (var c = new Probe(o))
        {
            c.Until(() => c.Connects.Count == 1, "connected");
            var sw = Stopwatch.StartNew();
            c.Client.Pause();
            Thread.Sleep(300); // paused: no Dispatch
            Assert.True(Online(a, key), "online within the grace");
            while (Online(a, key))
            {
                if (sw.Elapsed > TimeSpan.FromSeconds(10)) throw new Exception("still online 10 s after Pause with a 2 s grace");
                Thread.Sleep(100);
            }
            Assert.True(sw.ElapsedMilliseconds >= 2000, "offline before the grace ended");
            Console.WriteLine("FIGURE offline-after-Pause (grace 2 s): " + sw.ElapsedMilliseconds + " ms");
            c.Client.Resume();
            c.Until(() => c.Connects.Count == 2, "a new connection at once after Resume");
            Assert.Equal(c.Connects[0], c.Connects[1], "on the same node");

            c.Client.Pause();
            Thread.Sleep(100); // well within the 2 s grace
            c.Client.Resume();
            c.Settle(2000); // past ProbeTimeout
            Assert.Equal(2, c.Connects.Count, "resumed within the grace: the probe was answered and the connection kept");
            Assert.True(Online(a, key), "still online");
        }

        string p = Env("HERALD_P");
        var q = new HeraldOptions { Urls = new[] { Ws(p), Ws(Env("HERALD_B")) }, Key = "u-pause3", ProbeTimeout = TimeSpan.FromSeconds(1), ConnectTimeout = TimeSpan.FromSeconds(5) };
        using (var c = new Probe(q))
        {
            c.Until(() => c.Connects.Count == 1, "connected to p");
            c.Client.Pause();
            Signal("STOP", "HERALD_P_PID");
            try
            {
                c.Client.Resume();
                var sw = Stopwatch.StartNew();
                c.Until(() => c.Disconnects.Any(d => d.Reason.Contains("resumed")), "the unanswered probe to end it", 5);
                Console.WriteLine("FIGURE replaced-after-unanswered-probe (ProbeTimeout 1 s): " + sw.ElapsedMilliseconds + " ms");
            }
            finally
            {
                Signal("CONT", "HERALD_P_PID");
            }
            c.Until(() => c.Connects.Count == 2, "a new connection");
            Assert.Equal(c.Connects[0], c.Connects[1], "on the same node");
        }
    }

    static void RetryAfter429()
    {
        string l = Env("HERALD_L"), key = "u-limit";
        using (var holder = new Probe(new HeraldOptions { Urls = new[] { Ws(l) }, Key = key }))
        {
            holder.Until(() => holder.Connects.Count == 1, "the key's one connection");
            var clock = Stopwatch.StartNew();
            var attempts = new List<long>();
            var o = new HeraldOptions
            {
                Urls = new[] { Ws(l), Ws(Env("HERALD_B")) }, Key = key, Clock = () => clock.ElapsedMilliseconds,
                Transport = () => { attempts.Add(clock.ElapsedMilliseconds); return new ClientWebSocketTransport(); },
            };
            using (var c = new Probe(o))
            {
                c.Until(() => c.Disconnects.Count(d => d.Code == 429) >= 2, "two refusals", 20);
                var d0 = c.Disconnects[0];
                Assert.True(d0.Reason.StartsWith("too_many_connections"), "the refusal's reason: " + d0);
                long waited = attempts[1] - attempts[0];
                Console.WriteLine("FIGURE attempt-after-429-Retry-After-5s: " + waited + " ms");
                Assert.True(waited >= 5000, "the next attempt came " + waited + " ms after a refusal with Retry-After: 5");
                holder.Client.Disconnect();
                holder.Settle(100);
                c.Until(() => c.Connects.Count == 1, "connected once the slot was free", 15);
                Assert.True(c.Connects[0].StartsWith(Ws(l)), "on the same node: " + c.Connects[0]);
            }
        }
    }

    static void TokenCompletesLater()
    {
        string s = Env("HERALD_S"), secret = Env("HERALD_SECRET");
        TaskCompletionSource<string> pending = null;
        int calledOn = -1;
        var o = new HeraldOptions
        {
            Urls = new[] { Ws(s) },
            GetToken = ct => { calledOn = Thread.CurrentThread.ManagedThreadId; pending = new TaskCompletionSource<string>(); return pending.Task; },
        };
        using (var c = new Probe(o))
        {
            c.Until(() => pending != null, "the token to be asked for");
            c.Settle(300);
            Assert.Equal(0, c.Connects.Count, "no connection before the token");
            Assert.Equal(HeraldState.Connecting, c.Client.State, "Connecting meanwhile");
            pending.SetResult(Token("u-later", 60, secret));
            c.Until(() => c.Connects.Count == 1, "connected with the token");
            Assert.Equal(Thread.CurrentThread.ManagedThreadId, calledOn, "GetToken ran on the Dispatch thread");
            Send(s, "{\"key\":\"u-later\",\"data\":\"hi\"}");
            c.Until(() => c.Messages.Any(m => m.DataJson == "\"hi\""), "a message");
        }
    }
}
