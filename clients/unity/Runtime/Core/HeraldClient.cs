using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace Herald
{
    /// <summary>
    /// A herald client: connects, reconnects with backoff, resumes after the
    /// last stored message it handed over, drops repeats, acknowledges, and
    /// replaces a connection that went silent.
    ///
    /// Events never run on a socket thread: they wait in a queue until the
    /// app calls Dispatch (Unity: from Update), or are posted to
    /// HeraldOptions.Context when one is given.
    /// </summary>
    public sealed class HeraldClient : IDisposable
    {
        /// <summary>A message, handed over once.</summary>
        public event Action<HeraldMessage> Message;
        /// <summary>A connection opened; the argument is the node's address.</summary>
        public event Action<string> Connected;
        /// <summary>A connection ended or was refused; Final says whether the client gave up.</summary>
        public event Action<HeraldDisconnect> Disconnected;
        /// <summary>Something went wrong that the client survives (a malformed frame, a failed token fetch).</summary>
        public event Action<Exception> Error;

        readonly HeraldOptions opts;
        readonly Backoff backoff;
        readonly DedupeWindow dedupe;
        readonly ConcurrentQueue<Action> events = new ConcurrentQueue<Action>();
        readonly CancellationTokenSource stop = new CancellationTokenSource();
        readonly object gate = new object();

        // Touched only by the connection loop.
        readonly Dictionary<string, StoredId> last = new Dictionary<string, StoredId>(); // "" = the key's stream
        int urlIndex;
        Task loop;
        volatile ISocketTransport current;
        volatile bool wakeNow;

        public HeraldClient(HeraldOptions options)
        {
            if (options == null) throw new ArgumentNullException("options");
            if (options.Urls == null || options.Urls.Length == 0) throw new ArgumentException("HeraldOptions.Urls is empty");
            if (options.GetToken == null && string.IsNullOrEmpty(options.Key))
                throw new ArgumentException("set HeraldOptions.Key (development) or HeraldOptions.GetToken");
            if (options.DeadAfter <= TimeSpan.Zero) throw new ArgumentException("HeraldOptions.DeadAfter must be positive");
            opts = options;
            backoff = new Backoff(options.MinBackoff, options.MaxBackoff, options.Random);
            dedupe = new DedupeWindow(options.DedupeWindow);
        }

        /// <summary>True once the client stopped (Dispose, or a final close).</summary>
        public bool Stopped { get; private set; }

        /// <summary>Connects in the background; returns at once.</summary>
        public void Start()
        {
            lock (gate)
            {
                if (loop != null) return;
                loop = Task.Run(() => RunAsync(stop.Token));
            }
        }

        /// <summary>
        /// Drops the current connection and reconnects at once, skipping the
        /// backoff (Unity: after OnApplicationPause(false), when the socket may
        /// have died while the app slept).
        /// </summary>
        public void Reconnect()
        {
            wakeNow = true;
            var t = current;
            if (t != null) t.Dispose();
        }

        /// <summary>Runs the queued events on the calling thread; returns how many ran.</summary>
        public int Dispatch()
        {
            int n = 0;
            Action a;
            while (events.TryDequeue(out a))
            {
                n++;
                a();
            }
            return n;
        }

        /// <summary>Acknowledges a stored message of the key, when AutoAck is off.</summary>
        public void Ack(HeraldMessage m)
        {
            if (m == null || !m.IsStored || m.Topic != null) return;
            var t = current;
            if (t != null) SendQuietly(t, "{\"type\":\"ack\",\"id\":" + JsonWriter.Quote(m.Id) + "}");
        }

        /// <summary>Stops: closes the connection (1000, waiting at most 0.5 s for the close to go out) and waits at most 1 s more for the background loop to end.</summary>
        public void Dispose()
        {
            Stopped = true;
            stop.Cancel();
            var t = current;
            if (t != null)
            {
                try { t.CloseAsync(1000, "bye", CancellationToken.None).Wait(500); } catch (Exception) { }
                t.Dispose();
            }
            var l = loop;
            if (l != null) { try { l.Wait(1000); } catch (Exception) { } }
        }

        void Raise(Action a)
        {
            if (opts.Context != null) opts.Context.Post(_ => a(), null);
            else events.Enqueue(a);
        }

        void RaiseError(Exception e)
        {
            Raise(() => { var h = Error; if (h != null) h(e); });
        }

        void RaiseDisconnected(int code, string reason, bool final)
        {
            var d = new HeraldDisconnect { Code = code, Reason = reason, Final = final };
            Raise(() => { var h = Disconnected; if (h != null) h(d); });
        }

        async Task RunAsync(CancellationToken ct)
        {
            int refusedTokens = 0;
            while (!ct.IsCancellationRequested)
            {
                string url = opts.Urls[urlIndex % opts.Urls.Length];
                string token = null;
                if (opts.GetToken != null)
                {
                    try
                    {
                        token = await opts.GetToken(ct).ConfigureAwait(false);
                    }
                    catch (Exception e)
                    {
                        if (ct.IsCancellationRequested) break;
                        RaiseError(new Exception("fetching a connection token failed", e));
                        await WaitAsync(backoff.Next(), ct).ConfigureAwait(false);
                        continue;
                    }
                }
                var outcome = await ConnectionAsync(url, token, ct).ConfigureAwait(false);
                if (ct.IsCancellationRequested) break;
                if (outcome.Code == 401)
                {
                    // A refused token: fetch a fresh one once at once; a
                    // second refusal in a row is final.
                    if (opts.GetToken == null || ++refusedTokens >= 2)
                    {
                        Finish(outcome.Code, "the token was refused: " + outcome.Reason);
                        break;
                    }
                    RaiseDisconnected(outcome.Code, outcome.Reason, false);
                    continue;
                }
                if (outcome.Opened) refusedTokens = 0;
                if (outcome.Code == 4001 || outcome.Code == 400 || outcome.Code == 403 || outcome.Code == 1009)
                {
                    Finish(outcome.Code, outcome.Reason);
                    break;
                }
                RaiseDisconnected(outcome.Code, outcome.Reason, false);
                if (outcome.Code == 4002) continue; // token expired: a fresh one, at once
                if (!outcome.Opened || outcome.Code == 1006 || outcome.Code == 503 || outcome.Code == 0) urlIndex++;
                TimeSpan wait = backoff.Next();
                if (wakeNow) { wakeNow = false; wait = TimeSpan.Zero; }
                await WaitAsync(wait, ct).ConfigureAwait(false);
            }
        }

        void Finish(int code, string reason)
        {
            Stopped = true;
            RaiseDisconnected(code, reason, true);
        }

        static async Task WaitAsync(TimeSpan d, CancellationToken ct)
        {
            if (d <= TimeSpan.Zero) return;
            try { await Task.Delay(d, ct).ConfigureAwait(false); } catch (OperationCanceledException) { }
        }

        struct Outcome
        {
            public bool Opened;
            public int Code;
            public string Reason;
        }

        /// <summary>Runs one connection from handshake to close.</summary>
        async Task<Outcome> ConnectionAsync(string url, string token, CancellationToken ct)
        {
            var transport = opts.Transport != null ? opts.Transport() : new ClientWebSocketTransport();
            try
            {
                var headers = new Dictionary<string, string>();
                if (token != null) headers["Authorization"] = "Bearer " + token;
                using (var connect = CancellationTokenSource.CreateLinkedTokenSource(ct))
                {
                    connect.CancelAfter(opts.ConnectTimeout);
                    try
                    {
                        await transport.ConnectAsync(BuildUri(url), headers, connect.Token).ConfigureAwait(false);
                    }
                    catch (HandshakeException e)
                    {
                        return new Outcome { Code = e.Status, Reason = e.Status == 0 ? "could not connect: " + e.Message : "refused with HTTP " + e.Status + " (" + e.Message + ")" };
                    }
                    catch (OperationCanceledException)
                    {
                        return new Outcome { Code = 0, Reason = "connecting timed out" };
                    }
                    catch (Exception e)
                    {
                        return new Outcome { Code = 0, Reason = "could not connect: " + e.Message };
                    }
                }
                current = transport;
                backoff.Reset();
                Raise(() => { var h = Connected; if (h != null) h(url); });
                var end = await ReadAsync(transport, ct).ConfigureAwait(false);
                end.Opened = true;
                return end;
            }
            finally
            {
                current = null;
                transport.Dispose();
            }
        }

        /// <summary>
        /// Reads until the connection ends. A watchdog pings at a third of
        /// DeadAfter and drops the connection when nothing came for DeadAfter.
        /// </summary>
        async Task<Outcome> ReadAsync(ISocketTransport transport, CancellationToken ct)
        {
            long lastFrame = Environment.TickCount;
            bool dead = false;
            using (var conn = CancellationTokenSource.CreateLinkedTokenSource(ct))
            {
                var watchdog = Task.Run(async () =>
                {
                    int tick = (int)Math.Max(50, opts.DeadAfter.TotalMilliseconds / 3);
                    while (!conn.IsCancellationRequested)
                    {
                        try { await Task.Delay(tick, conn.Token).ConfigureAwait(false); } catch (OperationCanceledException) { return; }
                        long silent = unchecked(Environment.TickCount - Interlocked.Read(ref lastFrame));
                        if (silent >= opts.DeadAfter.TotalMilliseconds)
                        {
                            dead = true;
                            transport.Dispose(); // ends the pending receive
                            return;
                        }
                        SendQuietly(transport, "{\"type\":\"ping\"}");
                    }
                });
                try
                {
                    while (true)
                    {
                        TransportFrame f;
                        try
                        {
                            f = await transport.ReceiveAsync(conn.Token).ConfigureAwait(false);
                        }
                        catch (Exception e)
                        {
                            if (ct.IsCancellationRequested) return new Outcome { Code = 1000, Reason = "stopped" };
                            f = new TransportFrame { IsClose = true, CloseCode = 1006, CloseReason = e.Message };
                        }
                        if (dead) return new Outcome { Code = 1006, Reason = "no frame from the server for " + opts.DeadAfter.TotalSeconds + " s" };
                        if (f.IsClose) return new Outcome { Code = f.CloseCode, Reason = f.CloseReason };
                        Interlocked.Exchange(ref lastFrame, Environment.TickCount);
                        Handle(transport, f.Text);
                    }
                }
                finally
                {
                    conn.Cancel();
                    try { await watchdog.ConfigureAwait(false); } catch (Exception) { }
                }
            }
        }

        void Handle(ISocketTransport transport, string text)
        {
            if (opts.Raw)
            {
                var raw = new HeraldMessage { DataJson = text };
                Raise(() => { var h = Message; if (h != null) h(raw); });
                return;
            }
            HeraldMessage m;
            string error;
            switch (Frame.Read(text, out m, out error))
            {
                case FrameKind.Control:
                    return;
                case FrameKind.Malformed:
                    RaiseError(new FormatException(error));
                    return;
            }
            string id = m.Id;
            StoredId sid;
            if (StoredId.TryParse(id, out sid))
            {
                string stream = m.Topic ?? "";
                StoredId prev;
                if (last.TryGetValue(stream, out prev) && !sid.After(prev)) return; // handed over already
                last[stream] = sid;
                m.IsStored = true;
                m.Stored = sid;
            }
            else if (!dedupe.Add(id))
            {
                return;
            }
            Raise(() => { var h = Message; if (h != null) h(m); });
            if (m.IsStored && m.Topic == null && opts.AutoAck)
                SendQuietly(transport, "{\"type\":\"ack\",\"id\":\"" + m.Id + "\"}");
        }

        void SendQuietly(ISocketTransport t, string text)
        {
            t.SendAsync(text, CancellationToken.None).ContinueWith(task =>
            {
                var e = task.Exception; // observed: a send on a closing socket is expected
            }, TaskContinuationOptions.OnlyOnFaulted);
        }

        Uri BuildUri(string url)
        {
            var sb = new StringBuilder(url.TrimEnd('/'));
            if (!url.Contains("/v1/ws")) sb.Append("/v1/ws");
            char sep = url.Contains("?") ? '&' : '?';
            Action<string, string> add = (k, val) =>
            {
                sb.Append(sep).Append(k).Append('=').Append(Uri.EscapeDataString(val));
                sep = '&';
            };
            if (opts.GetToken == null) add("key", opts.Key);
            if (opts.Topics != null && opts.Topics.Length > 0) add("topics", string.Join(",", opts.Topics));
            if (opts.Raw) add("format", "raw");
            foreach (var s in last)
            {
                if (s.Key == "") add("since", s.Value.ToString());
                else add("since." + s.Key, s.Value.ToString());
            }
            return new Uri(sb.ToString());
        }
    }
}
