// Unit tests of the tick-driven core's own logic: a scripted ITransport and
// a clock the test moves, so that every timer is checked without sleeping.
// These prove timing, the state machine and ack bookkeeping; the stories in
// NodeTests prove the same against real nodes and sockets.
using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using Herald;

/// <summary>A transport whose events the test writes and whose calls it reads.</summary>
sealed class ScriptedTransport : ITransport
{
    public readonly Queue<TransportEvent> Events = new Queue<TransportEvent>();
    public readonly List<string> Sent = new List<string>();
    public string Url, Token;
    public bool Disposed;
    public int ClosedWith = -1;
    public int ScheduledCloseMs = -1;
    public bool ScheduleCancelled;
    public readonly HashSet<int> CallerThreads = new HashSet<int>();

    void Called() { CallerThreads.Add(Thread.CurrentThread.ManagedThreadId); }

    public void Open(string url, string token) { Called(); Url = url; Token = token; }
    public bool TryReceive(out TransportEvent e)
    {
        Called();
        if (Events.Count > 0) { e = Events.Dequeue(); return true; }
        e = new TransportEvent();
        return false;
    }
    public void Send(string text) { Called(); Sent.Add(text); }
    public void Close(int code, string reason) { Called(); ClosedWith = code; }
    public void ScheduleClose(int delayMs, int code, string reason) { Called(); ScheduledCloseMs = delayMs; }
    public void CancelScheduledClose() { Called(); ScheduleCancelled = true; }
    public void Dispose() { Called(); Disposed = true; }

    public void Opened() { Events.Enqueue(new TransportEvent { Kind = TransportEventKind.Opened }); }
    public void Text(string t) { Events.Enqueue(new TransportEvent { Kind = TransportEventKind.Text, Text = t }); }
    public void Closed(int code, string reason) { Events.Enqueue(new TransportEvent { Kind = TransportEventKind.Closed, Code = code, Reason = reason }); }
    public void Refused(int status, string reason, int retryAfterMs)
    {
        Events.Enqueue(new TransportEvent { Kind = TransportEventKind.Closed, Code = status, Reason = reason, Refused = true, RetryAfterMs = retryAfterMs });
    }
    public IEnumerable<string> Acks { get { return Sent.Where(s => s.Contains("\"ack\"")); } }
}

/// <summary>A Random whose every draw is the top of the range: backoff waits are their ceiling.</summary>
sealed class MaxRandom : Random
{
    protected override double Sample() { return 0.999999; }
    public override double NextDouble() { return Sample(); }
}

/// <summary>A client on scripted transports and a test clock, and what it reported.</summary>
sealed class Rig
{
    public long Now = 1000;
    public readonly List<ScriptedTransport> Transports = new List<ScriptedTransport>();
    public readonly HeraldClient Client;
    public readonly List<HeraldMessage> Messages = new List<HeraldMessage>();
    public readonly List<HeraldDisconnect> Disconnects = new List<HeraldDisconnect>();
    public readonly List<Exception> Errors = new List<Exception>();
    public readonly List<string> Connects = new List<string>();
    public readonly List<HeraldState> States = new List<HeraldState>();
    public readonly HashSet<int> HandlerThreads = new HashSet<int>();

    public Rig(Action<HeraldOptions> configure = null)
    {
        var o = new HeraldOptions
        {
            Urls = new[] { "ws://one", "ws://two" },
            Key = "k",
            Random = new MaxRandom(),
            MinBackoff = TimeSpan.FromSeconds(1),
            MaxBackoff = TimeSpan.FromSeconds(8),
            Clock = () => Now,
            Transport = () => { var t = new ScriptedTransport(); Transports.Add(t); return t; },
        };
        if (configure != null) configure(o);
        Client = new HeraldClient(o);
        Client.Message += m => { Messages.Add(m); Seen(); };
        Client.Disconnected += d => { Disconnects.Add(d); Seen(); };
        Client.Error += e => { Errors.Add(e); Seen(); };
        Client.Connected += u => { Connects.Add(u); Seen(); };
        Client.StateChanged += s => { States.Add(s); Seen(); };
    }

    void Seen() { HandlerThreads.Add(Thread.CurrentThread.ManagedThreadId); }

    public ScriptedTransport Last { get { return Transports[Transports.Count - 1]; } }

    public int Tick(long advanceMs = 0) { Now += advanceMs; return Client.Dispatch(); }

    /// <summary>Connect, and open the first transport.</summary>
    public ScriptedTransport Open()
    {
        Client.Connect();
        Tick();
        var t = Last;
        t.Opened();
        Tick();
        Assert.Equal(HeraldState.Open, Client.State, "open");
        return t;
    }

    public static string Stored(string id, string data) { return "{\"id\":\"" + id + "\",\"key\":\"k\",\"data\":" + data + "}"; }
}

/// <summary>A SynchronizationContext and a TaskScheduler that count what is handed to them.</summary>
sealed class CountingContext : SynchronizationContext
{
    public int Posts;
    public override void Post(SendOrPostCallback d, object state) { Interlocked.Increment(ref Posts); d(state); }
    public override void Send(SendOrPostCallback d, object state) { Interlocked.Increment(ref Posts); d(state); }
}

sealed class InlineCountingScheduler : TaskScheduler
{
    public int Queued;
    protected override void QueueTask(Task task) { Interlocked.Increment(ref Queued); TryExecuteTask(task); }
    protected override bool TryExecuteTaskInline(Task task, bool taskWasPreviouslyQueued) { return TryExecuteTask(task); }
    protected override IEnumerable<Task> GetScheduledTasks() { return new Task[0]; }
}

static class TickTests
{
    public static void Add(List<KeyValuePair<string, Action>> tests)
    {
        tests.Add(new KeyValuePair<string, Action>("tick: nothing happens before Dispatch; the first attempt is made by the first Dispatch", NothingBeforeDispatch));
        tests.Add(new KeyValuePair<string, Action>("tick: backoff waits are measured by the clock", BackoffHonoursTheClock));
        tests.Add(new KeyValuePair<string, Action>("tick: Reconnect cuts a backoff wait short (same address) and replaces an open connection at once", ReconnectCutsTheWait));
        tests.Add(new KeyValuePair<string, Action>("tick: ConnectTimeout ends a handshake and a token fetch by the clock", ConnectTimeoutByTheClock));
        tests.Add(new KeyValuePair<string, Action>("tick: pings every DeadAfter/3; silence for DeadAfter replaces the connection on the next address", DeadAfterByTheClock));
        tests.Add(new KeyValuePair<string, Action>("tick: Retry-After: 429 waits at least that long on the same address, 503 on the next", RetryAfterIsHonoured));
        tests.Add(new KeyValuePair<string, Action>("tick: final closes stop it; 4002 and one refused token get a fresh token at once", FinalAndTokenCloses));
        tests.Add(new KeyValuePair<string, Action>("tick: a throwing handler: reported, the others run, no ack passes it, it comes again and then everything is acked", ThrowingHandlerHoldsAcks));
        tests.Add(new KeyValuePair<string, Action>("tick: Ack is cumulative and waits for a connection; topic messages are never acked", ManualAck));
        tests.Add(new KeyValuePair<string, Action>("tick: Pause holds acks and schedules the close; Resume probes: a frame keeps it, silence replaces it on the same address", PauseAndResume));
        tests.Add(new KeyValuePair<string, Action>("tick: a close while paused is replaced at once on Resume, on the same address, with no backoff", ClosedWhilePaused));
        tests.Add(new KeyValuePair<string, Action>("tick: a token Task completed later is polled, never waited on", TokenCompletedLater));
        tests.Add(new KeyValuePair<string, Action>("tick: bytes allocated per stored message through Dispatch (figure only)", BytesPerMessage));
        tests.Add(new KeyValuePair<string, Action>("tick: 1000 ticks run every handler on the ticking thread and hand nothing to a context, scheduler or other thread", NoThreadsNoTasks));
    }

    static void NothingBeforeDispatch()
    {
        var r = new Rig();
        r.Client.Connect();
        Assert.Equal(0, r.Transports.Count, "no transport before Dispatch");
        r.Tick();
        Assert.Equal(1, r.Transports.Count, "the first Dispatch opens one");
        Assert.True(r.Last.Url.StartsWith("ws://one/v1/ws?key=k"), "url " + r.Last.Url);
        r.Last.Opened();
        r.Last.Text(Rig.Stored("5-0", "1"));
        r.Client.Reconnect();
        r.Client.Pause();
        r.Client.Resume();
        Assert.Equal(0, r.Messages.Count + r.Connects.Count + r.Disconnects.Count, "no handler ran outside Dispatch");
        r.Tick();
        Assert.Equal(1, r.Connects.Count, "Connected in Dispatch");
        Assert.Equal(1, r.Messages.Count, "the message in Dispatch");
    }

    static void BackoffHonoursTheClock()
    {
        var r = new Rig(o => o.Urls = new[] { "ws://one" });
        r.Client.Connect();
        r.Tick();
        r.Last.Refused(0, "could not connect", 0);
        r.Tick();
        Assert.Equal(HeraldState.Waiting, r.Client.State, "waiting");
        r.Tick(998);
        Assert.Equal(1, r.Transports.Count, "no attempt before the 1 s wait ended");
        r.Tick(2);
        Assert.Equal(2, r.Transports.Count, "the attempt when it ended");
        r.Last.Refused(0, "could not connect", 0);
        r.Tick();
        r.Tick(1990);
        Assert.Equal(2, r.Transports.Count, "the second wait doubles");
        r.Tick(10);
        Assert.Equal(3, r.Transports.Count, "after 2 s");
    }

    static void ReconnectCutsTheWait()
    {
        var r = new Rig(o => { o.MinBackoff = TimeSpan.FromSeconds(8); o.MaxBackoff = TimeSpan.FromSeconds(8); });
        r.Client.Connect();
        r.Tick();
        r.Last.Refused(503, "node_full: full", 0);
        r.Tick();
        Assert.Equal(HeraldState.Waiting, r.Client.State, "in an 8 s wait");
        r.Tick(100);
        r.Client.Reconnect();
        r.Tick();
        Assert.Equal(2, r.Transports.Count, "Reconnect: the attempt at the next Dispatch");
        Assert.True(r.Last.Url.StartsWith("ws://two"), "the address the wait was for: " + r.Last.Url);
        var first = r.Last;
        first.Opened();
        r.Tick();
        r.Client.Reconnect();
        Assert.Equal(1000, first.ClosedWith, "the open connection is closed at once");
        r.Tick();
        Assert.Equal(3, r.Transports.Count, "and replaced at the next Dispatch");
        Assert.True(r.Last.Url.StartsWith("ws://two"), "on the same address: " + r.Last.Url);
    }

    static void ConnectTimeoutByTheClock()
    {
        var r = new Rig(o => o.ConnectTimeout = TimeSpan.FromSeconds(5));
        r.Client.Connect();
        r.Tick();
        r.Tick(4999);
        Assert.Equal(HeraldState.Connecting, r.Client.State, "still connecting at 4.999 s");
        r.Tick(1);
        Assert.True(r.Transports[0].Disposed, "the handshake dropped at 5 s");
        Assert.True(r.Disconnects.Count == 1 && r.Disconnects[0].Reason.Contains("timed out"), "reported: " + string.Join(",", r.Disconnects.Select(d => d.ToString()).ToArray()));
        r.Tick(1000);
        Assert.True(r.Last.Url.StartsWith("ws://two"), "then the next address");

        var never = new TaskCompletionSource<string>();
        CancellationToken seen = CancellationToken.None;
        var t = new Rig(o => { o.Key = null; o.ConnectTimeout = TimeSpan.FromSeconds(5); o.GetToken = ct => { seen = ct; return never.Task; }; });
        t.Client.Connect();
        t.Tick();
        t.Tick(4999);
        Assert.Equal(0, t.Errors.Count, "the token may take 4.999 s");
        t.Tick(1);
        Assert.True(t.Errors.Count == 1 && t.Errors[0] is TimeoutException, "a token fetch over ConnectTimeout is an error");
        Assert.True(seen.IsCancellationRequested, "and its CancellationToken is cancelled");
        Assert.Equal(HeraldState.Waiting, t.Client.State, "then a backoff wait");
        Assert.Equal(0, t.Transports.Count, "no connection without a token");
    }

    static void DeadAfterByTheClock()
    {
        var r = new Rig(o => o.DeadAfter = TimeSpan.FromSeconds(3));
        var t = r.Open();
        r.Tick(999);
        Assert.Equal(0, t.Sent.Count, "no ping before 1 s");
        r.Tick(1);
        Assert.Equal(1, t.Sent.Count(s => s == "{\"type\":\"ping\"}"), "a ping at DeadAfter/3");
        t.Text("{\"type\":\"pong\"}");
        r.Tick(500); // the pong at 1.5 s: silence counts from here
        r.Tick(2999);
        Assert.Equal(HeraldState.Open, r.Client.State, "alive 2.999 s after the last frame");
        r.Tick(1);
        Assert.True(t.Disposed, "dropped after 3 s of silence");
        Assert.True(r.Disconnects.Last().Reason.Contains("no frame"), "reason: " + r.Disconnects.Last());
        r.Tick(1000);
        Assert.True(r.Last.Url.StartsWith("ws://two"), "the next address: " + r.Last.Url);
    }

    static void RetryAfterIsHonoured()
    {
        var r = new Rig(o => { o.MinBackoff = TimeSpan.FromMilliseconds(10); });
        r.Client.Connect();
        r.Tick();
        r.Last.Refused(429, "too_many_connections: key already has 1", 5000);
        r.Tick();
        r.Tick(4999);
        Assert.Equal(1, r.Transports.Count, "429: no attempt before Retry-After");
        r.Tick(1);
        Assert.Equal(2, r.Transports.Count, "429: the attempt after 5 s");
        Assert.True(r.Last.Url.StartsWith("ws://one"), "429: the same address");
        r.Last.Refused(503, "node is draining", 2000);
        r.Tick();
        r.Tick(1999);
        Assert.Equal(2, r.Transports.Count, "503: no attempt before Retry-After");
        r.Tick(1);
        Assert.True(r.Last.Url.StartsWith("ws://two"), "503: the next address");
        r.Last.Refused(503, "node is draining", int.MaxValue);
        r.Tick();
        r.Tick(10 * 60 * 1000);
        Assert.Equal(4, r.Transports.Count, "Retry-After is capped at 10 minutes");
        Assert.Equal(503, r.Disconnects[1].Code, "reported with the status");
    }

    static void FinalAndTokenCloses()
    {
        foreach (var code in new[] { 4001, 1009 })
        {
            var r = new Rig();
            r.Open().Closed(code, "bye");
            r.Tick();
            Assert.True(r.Client.Stopped && r.Disconnects.Last().Final, code + " is final");
            r.Tick(60000);
            Assert.Equal(1, r.Transports.Count, code + ": no reconnect");
        }
        foreach (var status in new[] { 400, 403 })
        {
            var r = new Rig();
            r.Client.Connect();
            r.Tick();
            r.Last.Refused(status, "invalid_key: bad", 0);
            r.Tick();
            Assert.True(r.Client.Stopped && r.Disconnects.Last().Final, status + " is final");
        }
        int calls = 0;
        var tr = new Rig(o => { o.Key = null; o.GetToken = ct => Task.FromResult("t" + (++calls)); });
        tr.Open().Closed(4002, "token expired");
        tr.Tick();
        Assert.Equal(2, tr.Transports.Count, "4002: a new attempt in the same tick");
        Assert.Equal("t2", tr.Last.Token, "with a fresh token");
        tr.Last.Refused(401, "invalid_token: expired", 0);
        tr.Tick();
        Assert.True(!tr.Client.Stopped && tr.Last.Token == "t3", "one refused token: a fresh one at once");
        tr.Last.Refused(401, "invalid_token: expired", 0);
        tr.Tick();
        Assert.True(tr.Client.Stopped && tr.Disconnects.Last().Reason.Contains("token was refused"), "a second refusal in a row is final");
        tr.Client.Connect();
        tr.Tick();
        Assert.Equal(4, tr.Transports.Count, "Connect starts a stopped client again");
    }

    static void ThrowingHandlerHoldsAcks()
    {
        var r = new Rig();
        bool fail = true;
        int second = 0;
        r.Client.Message += m => { if (fail && m.DataJson == "\"bad\"") throw new InvalidOperationException("no room in the inventory"); };
        r.Client.Message += m => second++;
        var t = r.Open();
        t.Text(Rig.Stored("10-0", "\"ok\""));
        r.Tick();
        Assert.Equal("{\"type\":\"ack\",\"id\":\"10-0\"}", t.Acks.Last(), "a handled message is acked");
        t.Text(Rig.Stored("11-0", "\"bad\""));
        t.Text(Rig.Stored("12-0", "\"after\""));
        r.Tick();
        Assert.Equal(3, second, "the other handler ran on every message");
        var e = r.Errors.OfType<HeraldHandlerException>().Single();
        Assert.Equal("11-0", e.HeraldMessage.Id, "the exception carries the message");
        Assert.True(e.InnerException is InvalidOperationException, "and what the handler threw");
        Assert.Equal(1, t.Acks.Count(), "no ack of 11-0 or 12-0 (an ack of 12-0 would cover 11-0)");
        r.Client.Reconnect();
        r.Tick();
        Assert.True(r.Last.Url.Contains("since=10-0"), "resumes just before the failed message: " + r.Last.Url);
        fail = false;
        var t2 = r.Last;
        t2.Opened();
        t2.Text(Rig.Stored("11-0", "\"bad\""));
        t2.Text(Rig.Stored("12-0", "\"after\""));
        t2.Text(Rig.Stored("13-0", "\"new\""));
        r.Tick();
        Assert.Equal("10-0,11-0,12-0,11-0,13-0", string.Join(",", r.Messages.Select(m => m.Id).ToArray()), "11-0 again, 12-0 not twice");
        Assert.Equal("{\"type\":\"ack\",\"id\":\"13-0\"}", t2.Acks.Last(), "then everything handled is acked");
        r.Client.Reconnect();
        r.Tick();
        Assert.True(r.Last.Url.Contains("since=13-0"), "and resumes after it: " + r.Last.Url);

        var first = new Rig();
        first.Client.Message += m => { throw new Exception("x"); };
        var ft = first.Open();
        ft.Text(Rig.Stored("20-0", "1"));
        first.Tick();
        first.Client.Reconnect();
        first.Tick();
        Assert.True(!first.Last.Url.Contains("since"), "no since when the first message failed: " + first.Last.Url);
    }

    static void ManualAck()
    {
        var r = new Rig(o => { o.AutoAck = false; o.Topics = new[] { "board" }; });
        var t = r.Open();
        t.Text(Rig.Stored("1-0", "1"));
        t.Text(Rig.Stored("2-0", "2"));
        t.Text("{\"id\":\"3-0\",\"topic\":\"board\",\"data\":3}");
        r.Tick();
        Assert.Equal(0, t.Acks.Count(), "AutoAck off: no ack");
        r.Client.Ack(r.Messages[2]);
        Assert.Equal(0, t.Acks.Count(), "a topic message is never acked");
        r.Client.Ack(r.Messages[1]);
        Assert.Equal("{\"type\":\"ack\",\"id\":\"2-0\"}", t.Acks.Single(), "Ack(m) sends m's id (cumulative)");
        r.Client.Ack(r.Messages[0]);
        Assert.Equal(1, t.Acks.Count(), "an ack behind the last one is not sent");
        t.Closed(1006, "gone");
        r.Tick();
        r.Tick(5000);
        var t2 = r.Last;
        Assert.True(t2 != t, "a new connection");
        t2.Opened();
        r.Tick();
        Assert.Equal("{\"type\":\"ack\",\"id\":\"2-0\"}", t2.Acks.Single(), "the last ack goes again on the new connection");
    }

    static void PauseAndResume()
    {
        var r = new Rig(o => { o.PauseGrace = TimeSpan.FromSeconds(10); o.ProbeTimeout = TimeSpan.FromSeconds(3); o.DeadAfter = TimeSpan.FromSeconds(9); });
        var t = r.Open();
        r.Client.Pause();
        Assert.Equal(10000, t.ScheduledCloseMs, "the close is scheduled on the transport's timer");
        Assert.Equal(HeraldState.Paused, r.Client.State, "Paused");
        t.Text(Rig.Stored("1-0", "1"));
        r.Tick();
        Assert.Equal(1, r.Messages.Count, "a Dispatch while paused still hands messages over");
        Assert.Equal(0, t.Acks.Count(), "but holds the ack");
        r.Now += 60000; // the app slept for a minute: not silence of the server
        r.Client.Resume();
        Assert.True(t.ScheduleCancelled, "Resume cancels the scheduled close");
        Assert.Equal("{\"type\":\"ping\"}", t.Sent.Last(), "and probes with a ping");
        r.Tick();
        Assert.Equal(HeraldState.Open, r.Client.State, "not counted as dead");
        Assert.Equal("{\"type\":\"ack\",\"id\":\"1-0\"}", t.Acks.Single(), "the held ack goes after Resume");
        t.Text("{\"type\":\"pong\"}");
        r.Tick(100);
        r.Tick(5000);
        Assert.Equal(1, r.Transports.Count, "answered: kept, past ProbeTimeout");
        Assert.Equal(1, r.Connects.Count, "no second Connected");

        r.Client.Pause();
        r.Now += 5000;
        r.Client.Resume();
        r.Tick(2999);
        Assert.Equal(1, r.Transports.Count, "unanswered for 2.999 s: still kept");
        r.Tick(1);
        Assert.True(t.Disposed, "unanswered for ProbeTimeout: dropped");
        Assert.Equal(2, r.Transports.Count, "replaced at once, no backoff");
        Assert.True(r.Last.Url.StartsWith("ws://one"), "on the same address: " + r.Last.Url);
    }

    static void ClosedWhilePaused()
    {
        var r = new Rig(o => { o.MinBackoff = TimeSpan.FromSeconds(30); o.MaxBackoff = TimeSpan.FromSeconds(30); });
        var t = r.Open();
        r.Client.Pause();
        t.Text(Rig.Stored("1-0", "1"));
        t.Closed(1000, "app paused"); // the grace ran out while no tick ran
        r.Now += 20000;
        r.Client.Resume();
        r.Tick();
        Assert.Equal(1, r.Messages.Count, "what came before the close is handed over");
        Assert.Equal(2, r.Transports.Count, "a new connection in the first Dispatch after Resume");
        Assert.True(r.Last.Url.StartsWith("ws://one") && r.Last.Url.Contains("since=1-0"), "same address, resuming: " + r.Last.Url);

        var s = new Rig();
        var st = s.Open();
        s.Client.Pause();
        st.Closed(1006, "the OS took the socket");
        s.Tick();
        Assert.Equal(1, s.Transports.Count, "no attempt while paused");
        s.Tick(60000);
        Assert.Equal(1, s.Transports.Count, "not even after a minute");
        s.Client.Resume();
        s.Tick();
        Assert.Equal(2, s.Transports.Count, "at once on Resume");
        Assert.True(s.Last.Url.StartsWith("ws://one"), "on the same address");
    }

    static void TokenCompletedLater()
    {
        var tcs = new TaskCompletionSource<string>();
        int calledOn = -1;
        var r = new Rig(o => { o.Key = null; o.GetToken = ct => { calledOn = Thread.CurrentThread.ManagedThreadId; return tcs.Task; }; });
        r.Client.Connect();
        for (int i = 0; i < 50; i++) r.Tick(10);
        Assert.Equal(Thread.CurrentThread.ManagedThreadId, calledOn, "GetToken ran on the dispatching thread");
        Assert.Equal(0, r.Transports.Count, "no connection before the token");
        tcs.SetResult("tok");
        r.Tick();
        Assert.Equal("tok", r.Last.Token, "the token goes to the transport");
        Assert.True(!r.Last.Url.Contains("key="), "no key with a token");
    }

    static void BytesPerMessage()
    {
        var r = new Rig();
        int handled = 0;
        r.Client.Message += m => handled++;
        var t = r.Open();
        const int n = 2000;
        var frames = new string[n];
        for (int i = 0; i < n; i++) frames[i] = Rig.Stored((1000 + i) + "-0", "{\"item\":\"Sword\",\"qty\":1}");
        for (int i = 0; i < 100; i++) { t.Text(frames[i]); r.Tick(); } // warm up
        r.Messages.Clear();
        t.Sent.Clear();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 100; i < n; i++) { t.Text(frames[i]); r.Tick(); }
        long bytes = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(n, handled, "every message handled");
        // Includes Frame.Read's message and data tree and the ack frame's
        // text (one ack per tick here: one message per tick), not the
        // transport's string, which the test made beforehand.
        Console.WriteLine("FIGURE dispatch-bytes-per-stored-message (one per tick, AutoAck, incl. Frame.Read and the ack): " + bytes / (n - 100) + " B");
    }

    static void NoThreadsNoTasks()
    {
        var ctx = new CountingContext();
        var scheduler = new InlineCountingScheduler();
        var previous = SynchronizationContext.Current;
        Rig r = null;
        int thread = -1;
        SynchronizationContext.SetSynchronizationContext(ctx);
        try
        {
            // Run inside a task of the counting scheduler, so that anything
            // the core schedules on TaskScheduler.Current is counted.
            Task.Factory.StartNew(() =>
            {
                thread = Thread.CurrentThread.ManagedThreadId;
                r = new Rig(o => { o.Key = null; o.GetToken = ct => Task.FromResult("t"); o.DeadAfter = TimeSpan.FromSeconds(3); });
                r.Client.Connect();
                int id = 0;
                for (int i = 0; i < 1000; i++)
                {
                    var t = r.Transports.Count > 0 ? r.Last : null;
                    if (t != null && i % 100 == 1) t.Opened();
                    if (t != null && i % 7 == 0) t.Text(Rig.Stored((++id) + "-0", "1"));
                    if (t != null && i % 100 == 50) t.Closed(1012, "restart");
                    if (i % 250 == 125) { r.Client.Pause(); r.Client.Resume(); }
                    r.Tick(37);
                }
            }, CancellationToken.None, TaskCreationOptions.None, scheduler).Wait();
        }
        finally
        {
            SynchronizationContext.SetSynchronizationContext(previous);
        }
        // Each connection lives under 2 s here, too short for the backoff to
        // start over, so the waits grow: a few connections, not one per close.
        Assert.True(r.Messages.Count > 50 && r.Connects.Count >= 3, "the run did something: " + r.Messages.Count + " messages, " + r.Connects.Count + " connections");
        Assert.Equal(1, scheduler.Queued, "only the test's own task was scheduled");
        Assert.Equal(0, ctx.Posts, "nothing was posted to the SynchronizationContext");
        Assert.True(r.HandlerThreads.Count == 1 && r.HandlerThreads.Contains(thread), "every handler ran on the ticking thread");
        Assert.True(r.Transports.All(t => t.CallerThreads.Count == 1 && t.CallerThreads.Contains(thread)), "the transports were called from the ticking thread only");
    }
}
