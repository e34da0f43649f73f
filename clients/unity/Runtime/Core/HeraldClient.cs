using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace Herald
{
    /// <summary>What a HeraldClient is doing.</summary>
    public enum HeraldState
    {
        /// <summary>Not started, or stopped by Disconnect.</summary>
        Idle,
        /// <summary>Fetching a token or in the handshake.</summary>
        Connecting,
        /// <summary>Connected.</summary>
        Open,
        /// <summary>Waiting (backoff, Retry-After) before the next attempt.</summary>
        Waiting,
        /// <summary>The app is in the background (Pause); acks are held.</summary>
        Paused,
        /// <summary>Gave up (a final close or refusal) or disposed.</summary>
        Stopped,
    }

    /// <summary>A Message handler threw; the message stays unacknowledged and comes again on the next connection.</summary>
    public sealed class HeraldHandlerException : Exception
    {
        /// <summary>The message the handler threw on; null when another event's handler threw.</summary>
        public HeraldMessage HeraldMessage { get; private set; }

        /// <summary>Wraps what a handler threw.</summary>
        public HeraldHandlerException(string what, HeraldMessage m, Exception inner) : base(what + ": " + inner.Message, inner)
        {
            HeraldMessage = m;
        }
    }

    /// <summary>
    /// A herald client: connects, reconnects with backoff, resumes after the
    /// last stored message it handled, drops repeats, acknowledges what its
    /// handlers returned from, and replaces a connection that went silent.
    ///
    /// It is single-threaded and driven by Dispatch, the tick (Unity: call it
    /// from Update): only in Dispatch does it poll its transport, advance its
    /// timers (against HeraldOptions.Clock), run the app's handlers and send
    /// acks. It starts no thread, task or timer of its own, so it runs under
    /// WebGL; every event runs on the thread that calls Dispatch.
    /// </summary>
    public sealed class HeraldClient : IDisposable
    {
        /// <summary>A message, handed over once. A stored message of the key is acknowledged (AutoAck) after every handler returned.</summary>
        public event Action<HeraldMessage> Message;
        /// <summary>A connection opened; the argument is the node's address.</summary>
        public event Action<string> Connected;
        /// <summary>A connection ended or was refused; Final says whether the client gave up.</summary>
        public event Action<HeraldDisconnect> Disconnected;
        /// <summary>Something went wrong that the client survives: a malformed frame, a failed token fetch, a handler that threw (HeraldHandlerException).</summary>
        public event Action<Exception> Error;
        /// <summary>State changed (raised from Dispatch, like every event).</summary>
        public event Action<HeraldState> StateChanged;

        enum Phase { Idle, Waiting, Token, Opening, Open, Stopped }

        const string Ping = "{\"type\":\"ping\"}";
        const long MaxRetryAfterMs = 10 * 60 * 1000;

        readonly HeraldOptions opts;
        readonly Func<long> clock;
        readonly Func<ITransport> newTransport;
        readonly Backoff backoff;
        readonly DedupeWindow dedupe;
        readonly FrameReader frames = new FrameReader();
        // The key's resume points and the ack owed, for the key they were
        // made for: a connection as another key (an account switch on one
        // client) starts both afresh, since since= of one key's stream on
        // another skips its older messages and an ack marks them read.
        KeyCursor cursor = new KeyCursor();
        AckQueue acks = new AckQueue();
        string cursorKey;
        readonly Dictionary<string, StoredId> topicLast = new Dictionary<string, StoredId>();
        // What Dispatch runs, in order: a message (Message set) or another event (Run set).
        struct Pending
        {
            public HeraldMessage Message;
            public Action Run;
        }

        readonly Queue<Pending> pending = new Queue<Pending>();
        readonly List<TransportEvent> backlog = new List<TransportEvent>();
        readonly long deadAfterMs, pingEveryMs, connectTimeoutMs, pauseGraceMs, probeTimeoutMs;

        Phase phase = Phase.Idle;
        ITransport transport;
        string url;
        int urlIndex, refusedTokens;
        long deadline;          // Waiting: next attempt; Token, Opening: give up
        long lastFrame, nextPing, probeDeadline;
        bool paused, probing, disposed, inBacklog;
        int dispatching;
        Task<string> tokenTask;
        CancellationTokenSource tokenCancel;
        HeraldState reported = HeraldState.Idle;

        /// <summary>Checks the options; connects on the first Dispatch after Connect.</summary>
        public HeraldClient(HeraldOptions options)
        {
            if (options == null) throw new ArgumentNullException("options");
            if (options.Urls == null || options.Urls.Length == 0) throw new ArgumentException("HeraldOptions.Urls is empty");
            if (options.GetToken == null && string.IsNullOrEmpty(options.Key))
                throw new ArgumentException("set HeraldOptions.Key (development) or HeraldOptions.GetToken");
            if (options.DeadAfter <= TimeSpan.Zero) throw new ArgumentException("HeraldOptions.DeadAfter must be positive");
            if (options.ConnectTimeout <= TimeSpan.Zero) throw new ArgumentException("HeraldOptions.ConnectTimeout must be positive");
            if (options.PauseGrace < TimeSpan.Zero) throw new ArgumentException("HeraldOptions.PauseGrace must not be negative");
            if (options.ProbeTimeout <= TimeSpan.Zero) throw new ArgumentException("HeraldOptions.ProbeTimeout must be positive");
            opts = options;
            clock = options.Clock ?? HeraldOptions.StopwatchClock();
            newTransport = options.Transport ?? HeraldOptions.DefaultTransport;
            backoff = new Backoff(options.MinBackoff, options.MaxBackoff, options.Random);
            dedupe = new DedupeWindow(options.DedupeWindow);
            deadAfterMs = (long)options.DeadAfter.TotalMilliseconds;
            pingEveryMs = Math.Max(1, deadAfterMs / 3);
            connectTimeoutMs = (long)options.ConnectTimeout.TotalMilliseconds;
            pauseGraceMs = (long)options.PauseGrace.TotalMilliseconds;
            probeTimeoutMs = (long)options.ProbeTimeout.TotalMilliseconds;
        }

        /// <summary>What the client is doing now.</summary>
        public HeraldState State
        {
            get
            {
                if (disposed || phase == Phase.Stopped) return HeraldState.Stopped;
                if (paused) return HeraldState.Paused;
                switch (phase)
                {
                    case Phase.Waiting: return HeraldState.Waiting;
                    case Phase.Token:
                    case Phase.Opening: return HeraldState.Connecting;
                    case Phase.Open: return HeraldState.Open;
                    default: return HeraldState.Idle;
                }
            }
        }

        /// <summary>True once the client gave up (a final close or refusal) or was disposed; Connect starts it again unless disposed.</summary>
        public bool Stopped { get { return disposed || phase == Phase.Stopped; } }

        /// <summary>Starts connecting (or again, after Disconnect or a final close); the first attempt is made by the next Dispatch.</summary>
        public void Connect()
        {
            if (disposed) throw new ObjectDisposedException("HeraldClient");
            if (phase != Phase.Idle && phase != Phase.Stopped) return;
            refusedTokens = 0;
            backoff.Reset();
            AttemptAt(long.MinValue);
            NoteState();
        }

        /// <summary>Closes the connection (1000) and stays Idle until Connect. Messages received and not yet dispatched are still handed over.</summary>
        public void Disconnect()
        {
            if (disposed) return;
            bool wasOpen = phase == Phase.Open;
            FlushAcks(); // what the handlers finished is acked before the close
            Drop(true, "bye");
            phase = Phase.Idle;
            if (wasOpen) RaiseDisconnected(1000, "Disconnect() was called", false);
            NoteState();
        }

        /// <summary>
        /// Reconnects now, on the same address: during a backoff wait the
        /// attempt is made by the next Dispatch; an open connection is closed
        /// and replaced at once. Nothing while connecting, idle or stopped.
        /// </summary>
        public void Reconnect()
        {
            if (disposed) return;
            if (phase == Phase.Waiting)
            {
                deadline = notBefore; // a node's Retry-After still holds
            }
            else if (phase == Phase.Open)
            {
                FlushAcks();
                Drop(true, "reconnecting");
                RaiseDisconnected(1000, "Reconnect() was called", false);
                AttemptAt(long.MinValue);
            }
            NoteState();
        }

        /// <summary>
        /// The app went to the background: acks are held, and the connection
        /// closes after PauseGrace on the transport's own timer (a paused app
        /// runs no Dispatch), unless Resume comes first.
        /// </summary>
        public void Pause()
        {
            if (disposed || paused) return;
            paused = true;
            if (phase == Phase.Open) transport.ScheduleClose((int)Math.Min(int.MaxValue, pauseGraceMs), 1000, "app paused");
            NoteState();
        }

        /// <summary>
        /// The app came back. An open connection is kept if it answers within
        /// ProbeTimeout (a ping goes at once) and replaced on the same address
        /// otherwise; one that closed meanwhile is replaced at once, with no
        /// backoff.
        /// </summary>
        public void Resume()
        {
            if (disposed || !paused) return;
            paused = false;
            long now = clock();
            if (phase == Phase.Open)
            {
                transport.CancelScheduledClose();
                // What came while paused proves nothing about the socket now:
                // keep it apart, so that only a frame after the ping counts.
                TransportEvent e;
                while (transport.TryReceive(out e)) backlog.Add(e);
                lastFrame = now; // the paused time is not silence of the server
                nextPing = now + pingEveryMs;
                probing = true;
                probeDeadline = now + probeTimeoutMs;
                transport.Send(Ping);
            }
            else if (phase == Phase.Waiting)
            {
                deadline = notBefore; // a node's Retry-After still holds
            }
            NoteState();
        }

        /// <summary>
        /// The tick: polls the transport, advances the connection and its
        /// timers, runs the handlers of what happened (on this thread) and
        /// sends acks. Returns how many events ran.
        /// </summary>
        public int Dispatch()
        {
            // Two threads in Dispatch at once would share the parser and the
            // cursor: the second returns at once instead.
            if (disposed || Interlocked.CompareExchange(ref dispatching, 1, 0) != 0) return 0;
            int n = 0;
            try
            {
                long now = clock();
                Poll(now);
                Advance(now);
                NoteState();
                while (pending.Count > 0 && !disposed)
                {
                    n++;
                    var p = pending.Dequeue();
                    if (p.Message != null) Deliver(p.Message);
                    else p.Run();
                    NoteState();
                }
                FlushAcks();
            }
            finally
            {
                Volatile.Write(ref dispatching, 0);
            }
            return n;
        }

        /// <summary>
        /// Acknowledges a stored message of the key (with AutoAck off). Acks
        /// are cumulative: this marks every stored message of the key up to m
        /// read, those before it too. Held while paused or disconnected, and
        /// sent when the connection is back.
        /// </summary>
        public void Ack(HeraldMessage m)
        {
            if (m == null || !m.IsStored || m.Topic != null || disposed) return;
            acks.Want(m.Stored);
            FlushAcks();
        }

        /// <summary>Stops for good: closes the connection (1000) without waiting, and runs no more events.</summary>
        public void Dispose()
        {
            if (disposed) return;
            FlushAcks();
            Drop(true, "bye");
            disposed = true;
            pending.Clear();
        }

        // ---- the tick ----

        void Poll(long now)
        {
            if (backlog.Count > 0)
            {
                var t0 = transport;
                inBacklog = true;
                try
                {
                    for (int i = 0; i < backlog.Count && transport == t0 && t0 != null; i++) OnEvent(backlog[i], now);
                }
                finally
                {
                    inBacklog = false;
                    backlog.Clear();
                }
            }
            var t = transport;
            TransportEvent e;
            while (t != null && transport == t && t.TryReceive(out e)) OnEvent(e, now);
        }

        void OnEvent(TransportEvent e, long now)
        {
            switch (e.Kind)
            {
                case TransportEventKind.Opened:
                    if (phase != Phase.Opening) return;
                    phase = Phase.Open;
                    lastFrame = now;
                    nextPing = now + pingEveryMs;
                    openedAt = now;
                    refusedTokens = 0;
                    acks.Resend();
                    if (paused) transport.ScheduleClose((int)Math.Min(int.MaxValue, pauseGraceMs), 1000, "app paused");
                    var u = url;
                    Raise(() => { var h = Connected; if (h != null) h(u); }, "Connected");
                    return;
                case TransportEventKind.Text:
                    lastFrame = now;
                    if (!inBacklog) probing = false;
                    OnFrame(e.Text);
                    return;
                case TransportEventKind.Closed:
                    OnClosed(e, now);
                    return;
            }
        }

        void Advance(long now)
        {
            switch (phase)
            {
                case Phase.Waiting:
                    if (!paused && now >= deadline) StartAttempt(now);
                    break;
                case Phase.Token:
                    PollToken(now);
                    break;
                case Phase.Opening:
                    if (now >= deadline)
                    {
                        Drop(false, null);
                        RaiseDisconnected(0, "connecting to " + url + " timed out after " + Seconds(connectTimeoutMs), false);
                        urlIndex++;
                        WaitBackoff(now, 0);
                    }
                    break;
                case Phase.Open:
                    if (probing && now >= probeDeadline)
                    {
                        Drop(false, null);
                        RaiseDisconnected(1006, "no answer within " + Seconds(probeTimeoutMs) + " after the app resumed", false);
                        StartAttempt(now); // the same address: the node is not to blame for our sleep
                    }
                    else if (!paused && now - lastFrame >= deadAfterMs)
                    {
                        Drop(false, null);
                        RaiseDisconnected(1006, "no frame from the server for " + Seconds(deadAfterMs), false);
                        urlIndex++;
                        WaitBackoff(now, 0);
                    }
                    else if (!paused && now >= nextPing)
                    {
                        nextPing = now + pingEveryMs;
                        transport.Send(Ping);
                    }
                    break;
            }
        }

        void StartAttempt(long now)
        {
            url = opts.Urls[urlIndex % opts.Urls.Length];
            if (opts.GetToken == null)
            {
                OpenTransport(null, now);
                return;
            }
            tokenCancel = new CancellationTokenSource();
            try
            {
                tokenTask = opts.GetToken(tokenCancel.Token);
                if (tokenTask == null) throw new InvalidOperationException("GetToken returned no Task");
            }
            catch (Exception e)
            {
                tokenTask = null;
                TokenFailed(new Exception("fetching a connection token failed: " + e.Message, e), now);
                return;
            }
            phase = Phase.Token;
            deadline = now + connectTimeoutMs;
            PollToken(now); // a token at hand (Task.FromResult) connects in this tick
        }

        void PollToken(long now)
        {
            var done = tokenTask;
            if (done.IsCompleted)
            {
                tokenTask = null;
                // Result of a completed Task: read, never waited on.
                if (done.Status == TaskStatus.RanToCompletion && !string.IsNullOrEmpty(done.Result))
                {
                    OpenTransport(done.Result, now);
                    return;
                }
                Exception why = done.IsFaulted ? done.Exception.GetBaseException() : null;
                string what = done.IsCanceled ? "was cancelled" : why != null ? "failed: " + why.Message : "returned no token";
                TokenFailed(new Exception("fetching a connection token " + what, why), now);
            }
            else if (now >= deadline)
            {
                tokenTask = null;
                tokenCancel.Cancel();
                TokenFailed(new TimeoutException("fetching a connection token took over " + Seconds(connectTimeoutMs)), now);
            }
        }

        /// <summary>
        /// Makes the resume points and the owed ack those of key: kept for the
        /// same key, started afresh for another, or when the key is unknown
        /// (a token that is not a JWT): then the node hands the key's unacked
        /// messages, which costs repeats at worst, never a message.
        /// </summary>
        void ForKey(string key)
        {
            if (key != null && key == cursorKey) return;
            if (cursorKey != null || key == null)
            {
                cursor = new KeyCursor();
                acks = new AckQueue();
            }
            cursorKey = key;
        }

        /// <summary>The "sub" of a JWT (read, not verified: the node verifies), or null.</summary>
        static string TokenSubject(string token)
        {
            try
            {
                var parts = token.Split('.');
                if (parts.Length != 3) return null;
                var b64 = parts[1].Replace('-', '+').Replace('_', '/');
                b64 = b64.PadRight(b64.Length + (4 - b64.Length % 4) % 4, '=');
                var sub = JsonValue.Parse(Encoding.UTF8.GetString(Convert.FromBase64String(b64)))["sub"];
                return sub != null ? sub.AsString() : null;
            }
            catch (Exception)
            {
                return null;
            }
        }

        void TokenFailed(Exception e, long now)
        {
            RaiseError(e);
            WaitBackoff(now, 0);
        }

        void OpenTransport(string token, long now)
        {
            ForKey(opts.GetToken == null ? opts.Key : TokenSubject(token));
            phase = Phase.Opening;
            deadline = now + connectTimeoutMs;
            try
            {
                transport = newTransport();
                transport.Open(BuildUrl(url), token);
            }
            catch (Exception e)
            {
                Drop(false, null);
                RaiseError(new Exception("the transport could not start: " + e.Message, e));
                urlIndex++;
                WaitBackoff(now, 0);
            }
        }

        void OnClosed(TransportEvent e, long now)
        {
            bool opened = phase == Phase.Open;
            // The backoff starts over after a connection that worked, not
            // after one a node (or a proxy in front of it) accepted only to
            // close at once: that would be a reconnect storm.
            if (opened && now - openedAt >= StableAfterMs) backoff.Reset();
            Drop(false, null);
            int code = e.Code;
            string reason = e.Reason ?? "";
            if (e.Refused)
            {
                if (code == 401)
                {
                    // A refused token: fetch a fresh one once at once; a
                    // second refusal in a row is final.
                    if (opts.GetToken == null || ++refusedTokens >= 2) { Finish(code, "the token was refused: " + reason); return; }
                    RaiseDisconnected(code, reason, false);
                    AttemptAt(now);
                    return;
                }
                if (code == 400 || code == 403) { Finish(code, reason); return; }
                RaiseDisconnected(code, reason, false);
                // 429 is a limit of this node for this key or address (a
                // stale socket of ours it has not noticed yet): another node
                // would only spread the key's connections. Anything else
                // refused (503 draining or full, unreachable) is the node's.
                if (code != 429) urlIndex++;
                WaitBackoff(now, Math.Min(MaxRetryAfterMs, Math.Max(0, e.RetryAfterMs)));
                return;
            }
            if (code == 4001 || code == 1009) { Finish(code, reason); return; }
            RaiseDisconnected(code, reason, false);
            if (opened && (paused || inBacklog || probing))
            {
                // Closed while the app slept (our grace ran out, or the OS
                // took the socket): nothing is wrong with the node.
                probing = false;
                AttemptAt(paused ? long.MaxValue : now);
                return;
            }
            if (code == 4002) { AttemptAt(now); return; } // token expired: a fresh one, at once
            if (code == 1006 || code == 0) urlIndex++;
            WaitBackoff(now, 0);
        }

        void Finish(int code, string reason)
        {
            phase = Phase.Stopped;
            RaiseDisconnected(code, reason, true);
        }

        void AttemptAt(long at)
        {
            phase = Phase.Waiting;
            deadline = at;
        }

        void WaitBackoff(long now, long atLeastMs)
        {
            long wait = Math.Max((long)backoff.Next().TotalMilliseconds, atLeastMs);
            AttemptAt(now + wait);
            notBefore = atLeastMs > 0 ? now + atLeastMs : long.MinValue;
        }

        // The earliest a node that answered Retry-After may be asked again:
        // Reconnect and Resume cut a backoff short, not that.
        long notBefore = long.MinValue;

        /// <summary>How long a connection must have lasted for the backoff to start over when it ends.</summary>
        const long StableAfterMs = 5000;

        /// <summary>How many topic streams the client keeps resume points for.</summary>
        const int MaxTopicCursors = 64;
        long openedAt;

        /// <summary>Lets go of the transport: a clean close, or dropped at once (dead, timed out, closed already).</summary>
        void Drop(bool clean, string reason)
        {
            probing = false;
            if (tokenCancel != null) { tokenCancel.Cancel(); tokenCancel = null; }
            tokenTask = null;
            var t = transport;
            transport = null;
            backlog.Clear();
            if (t == null) return;
            if (clean && phase == Phase.Open)
            {
                try { t.Close(1000, reason); } catch (Exception) { t.Dispose(); }
            }
            else
            {
                t.Dispose();
            }
        }

        // ---- messages ----

        void OnFrame(string text)
        {
            if (opts.Raw)
            {
                var raw = new HeraldMessage { DataJson = text };
                pending.Enqueue(new Pending { Message = raw });
                return;
            }
            HeraldMessage m;
            string error;
            switch (frames.Read(text, out m, out error))
            {
                case FrameKind.Control:
                    return;
                case FrameKind.Malformed:
                    RaiseError(new FormatException(error));
                    return;
            }
            StoredId sid;
            if (StoredId.TryParse(m.Id, out sid))
            {
                if (m.Topic == null)
                {
                    if (!cursor.Accept(sid)) return; // handed over already
                    m.Cursor = cursor;
                }
                else
                {
                    StoredId prev;
                    if (topicLast.TryGetValue(m.Topic, out prev))
                    {
                        if (!sid.After(prev)) return;
                        topicLast[m.Topic] = sid;
                    }
                    // A bound on the streams resumed: each is a since.<topic>
                    // in the URL, and a server naming thousands of topics
                    // would make it too long to connect with.
                    else if (topicLast.Count < MaxTopicCursors) topicLast[m.Topic] = sid;
                }
                m.IsStored = true;
                m.Stored = sid;
            }
            else if (!dedupe.Add(m.Id))
            {
                return;
            }
            pending.Enqueue(new Pending { Message = m });
        }

        /// <summary>Hands m to each handler on its own, then acks what all of them returned from.</summary>
        void Deliver(HeraldMessage m)
        {
            bool ok = true;
            var handlers = MessageHandlers();
            if (handlers != null)
            {
                for (int i = 0; i < handlers.Length; i++)
                {
                    try
                    {
                        ((Action<HeraldMessage>)handlers[i])(m);
                    }
                    catch (Exception e)
                    {
                        ok = false;
                        RunError(new HeraldHandlerException("a Message handler threw on " + m.Id, m, e));
                    }
                }
            }
            if (!m.IsStored || m.Topic != null) return;
            // Received for another key, before an account switch: its ack
            // would mark this key's messages read.
            if (!ReferenceEquals(m.Cursor, cursor)) return;
            cursor.Handled(m.Stored, ok);
            StoredId upTo;
            // Sent at the end of the tick: acks are cumulative, so a burst
            // handled in one Dispatch costs one ack frame.
            if (opts.AutoAck && cursor.AckPoint(out upTo)) acks.Want(upTo);
        }

        Action<HeraldMessage> listed;
        Delegate[] listedHandlers;

        /// <summary>The Message handlers one by one; the list is made again only when they changed (a delegate never changes in place).</summary>
        Delegate[] MessageHandlers()
        {
            var h = Message;
            if (h == null) return null;
            if (!ReferenceEquals(h, listed))
            {
                listedHandlers = h.GetInvocationList();
                listed = h;
            }
            return listedHandlers;
        }

        void FlushAcks()
        {
            StoredId id;
            if (paused || phase != Phase.Open || transport == null) return;
            if (acks.Take(out id)) transport.Send("{\"type\":\"ack\",\"id\":\"" + id + "\"}");
        }

        // ---- events ----

        /// <summary>Queues an event for this Dispatch: nothing runs outside it, and a throwing handler is reported, not fatal.</summary>
        void Raise(Action a, string what)
        {
            pending.Enqueue(new Pending { Run = () =>
            {
                try { a(); }
                catch (Exception e) { RunError(new HeraldHandlerException("a " + what + " handler threw", null, e)); }
            } });
        }

        void RaiseError(Exception e)
        {
            pending.Enqueue(new Pending { Run = () => RunError(e) });
        }

        void RunError(Exception e)
        {
            var h = Error;
            if (h == null) return;
            foreach (var d in h.GetInvocationList())
            {
                // An Error handler that throws has nowhere to be reported:
                // the other handlers still hear of e.
                try { ((Action<Exception>)d)(e); } catch (Exception) { }
            }
        }

        void RaiseDisconnected(int code, string reason, bool final)
        {
            var d = new HeraldDisconnect { Code = code, Reason = reason, Final = final };
            Raise(() => { var h = Disconnected; if (h != null) h(d); }, "Disconnected");
        }

        void NoteState()
        {
            var s = State;
            if (s == reported || disposed) return;
            reported = s;
            Raise(() => { var h = StateChanged; if (h != null) h(s); }, "StateChanged");
        }

        static string Seconds(long ms)
        {
            return (ms / 1000.0).ToString("0.###", CultureInfo.InvariantCulture) + " s";
        }

        string BuildUrl(string u)
        {
            var sb = new StringBuilder(u.TrimEnd('/'));
            if (!u.Contains("/v1/ws")) sb.Append("/v1/ws");
            char sep = u.Contains("?") ? '&' : '?';
            if (opts.GetToken == null) Param(sb, ref sep, "key", opts.Key);
            if (opts.Topics != null && opts.Topics.Length > 0) Param(sb, ref sep, "topics", string.Join(",", opts.Topics));
            if (opts.Raw) Param(sb, ref sep, "format", "raw");
            StoredId since;
            if (cursor.ResumePoint(out since)) Param(sb, ref sep, "since", since.ToString());
            foreach (var s in topicLast) Param(sb, ref sep, "since." + Uri.EscapeDataString(s.Key), s.Value.ToString());
            return sb.ToString();
        }

        static void Param(StringBuilder sb, ref char sep, string k, string v)
        {
            sb.Append(sep).Append(k).Append('=').Append(Uri.EscapeDataString(v));
            sep = '&';
        }
    }
}
