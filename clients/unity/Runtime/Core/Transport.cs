using System;
using System.Collections.Concurrent;
using System.Globalization;
using System.IO;
using System.Net.WebSockets;
using System.Text;
using System.Text.RegularExpressions;
using System.Threading;
using System.Threading.Tasks;

namespace Herald
{
    /// <summary>
    /// The transport on System.Net.WebSockets.ClientWebSocket (desktop,
    /// mobile, the editor; not WebGL). Its own tasks connect, receive and
    /// send, and hand what happened to the client's tick through a queue, so
    /// no call of the core ever waits on the network.
    /// </summary>
    [Preserve]
    public sealed class ClientWebSocketTransport : ITransport
    {
        // Mono and .NET both say "... status code '401' when status code '101' was expected."
        static readonly Regex StatusInMessage = new Regex(@"'(\d{3})'");

        /// <summary>A frame larger than this ends the connection (1009), rather than the app's memory.</summary>
        const int MaxFrameBytes = 16 << 20;

        /// <summary>
        /// Frames received and not yet taken by the client's tick past which
        /// the transport stops reading: an app whose Update is frozen (Android
        /// keeps socket threads running in the background) or that forgot
        /// Dispatch does not grow without bound; the node's slow-consumer
        /// policy ends the connection instead, and nothing unacked is lost.
        /// </summary>
        const int MaxQueuedFrames = 4096;

        /// <summary>How long a clean close waits for the server's answer before the socket is dropped.</summary>
        const int CloseWaitMs = 2000;

        readonly ClientWebSocket ws = new ClientWebSocket();
        readonly ConcurrentQueue<TransportEvent> events = new ConcurrentQueue<TransportEvent>();
        // A null entry is the close: it goes after what was queued before it.
        readonly ConcurrentQueue<string> outbox = new ConcurrentQueue<string>();
        readonly SemaphoreSlim outboxReady = new SemaphoreSlim(0);
        readonly CancellationTokenSource cancel = new CancellationTokenSource();
        readonly object gate = new object();
        byte[] receiveBuffer = new byte[16 * 1024];
        byte[] sendBuffer = new byte[1024];
        int opened, reported, queuedFrames;
        bool closing, disposed;
        int closeCode;
        string closeReason;
        Timer scheduled;

        /// <summary>Starts connecting; the token goes as an Authorization: Bearer header.</summary>
        public void Open(string url, string token)
        {
            if (Interlocked.Exchange(ref opened, 1) != 0) throw new InvalidOperationException("a transport is opened once");
            var uri = new Uri(url);
            Task.Run(() => RunAsync(uri, token));
        }

        /// <summary>The next event, if one is waiting.</summary>
        public bool TryReceive(out TransportEvent e)
        {
            if (!events.TryDequeue(out e)) return false;
            if (e.Kind == TransportEventKind.Text) Interlocked.Decrement(ref queuedFrames);
            return true;
        }

        /// <summary>Queues a text frame; dropped once the close started.</summary>
        public void Send(string text)
        {
            lock (gate)
            {
                if (closing || disposed) return;
                outbox.Enqueue(text);
            }
            outboxReady.Release();
        }

        /// <summary>Closes cleanly after what was queued; Closed follows.</summary>
        public void Close(int code, string reason)
        {
            lock (gate)
            {
                if (closing || disposed) return;
                closing = true;
                closeCode = code;
                closeReason = reason ?? "";
                outbox.Enqueue(null);
            }
            outboxReady.Release();
        }

        /// <summary>Closes after delayMs on a timer of its own, unless cancelled first.</summary>
        public void ScheduleClose(int delayMs, int code, string reason)
        {
            lock (gate)
            {
                if (disposed) return;
                if (scheduled != null) scheduled.Dispose();
                scheduled = new Timer(_ => Close(code, reason), null, Math.Max(0, delayMs), Timeout.Infinite);
            }
        }

        /// <summary>Cancels a ScheduleClose that has not fired.</summary>
        public void CancelScheduledClose()
        {
            lock (gate)
            {
                if (scheduled != null) scheduled.Dispose();
                scheduled = null;
            }
        }

        /// <summary>Drops the connection at once, without a close frame.</summary>
        public void Dispose()
        {
            lock (gate)
            {
                if (disposed) return;
                disposed = true;
                if (scheduled != null) scheduled.Dispose();
                scheduled = null;
            }
            cancel.Cancel();
            try { ws.Abort(); } catch (Exception) { }
            Report(new TransportEvent { Kind = TransportEventKind.Closed, Code = 1006, Reason = "dropped by the client" });
        }

        void Report(TransportEvent e)
        {
            // Closed is the last event, once.
            if (e.Kind == TransportEventKind.Closed && Interlocked.Exchange(ref reported, 1) != 0) return;
            if (Volatile.Read(ref reported) != 0 && e.Kind != TransportEventKind.Closed) return;
            if (e.Kind == TransportEventKind.Text) Interlocked.Increment(ref queuedFrames);
            events.Enqueue(e);
        }

        async Task RunAsync(Uri uri, string token)
        {
            try
            {
                if (token != null) ws.Options.SetRequestHeader("Authorization", "Bearer " + token);
                // Keep-alive pongs from the client say nothing about the server:
                // liveness is the client's own ping (see HeraldOptions.DeadAfter).
                ws.Options.KeepAliveInterval = TimeSpan.Zero;
                try
                {
                    await ws.ConnectAsync(uri, cancel.Token).ConfigureAwait(false);
                }
                catch (Exception e)
                {
                    if (cancel.IsCancellationRequested) return; // dropped by the client: Dispose reported it
                    Report(await RefusalAsync(uri, token, e).ConfigureAwait(false));
                    return;
                }
                Report(new TransportEvent { Kind = TransportEventKind.Opened });
                var sending = SendLoopAsync();
                await ReceiveLoopAsync().ConfigureAwait(false);
                cancel.Cancel();
                try { await sending.ConfigureAwait(false); } catch (Exception) { }
            }
            catch (Exception e)
            {
                Report(new TransportEvent { Kind = TransportEventKind.Closed, Code = 1006, Reason = e.Message });
            }
            finally
            {
                CancelScheduledClose();
                ws.Dispose();
            }
        }

        /// <summary>Reads frames into one buffer, grown as needed, decoding each once.</summary>
        async Task ReceiveLoopAsync()
        {
            int count = 0;
            while (true)
            {
                if (count == receiveBuffer.Length)
                {
                    if (receiveBuffer.Length >= MaxFrameBytes)
                    {
                        Report(new TransportEvent { Kind = TransportEventKind.Closed, Code = 1009, Reason = "a frame over " + (MaxFrameBytes >> 20) + " MiB" });
                        return;
                    }
                    Array.Resize(ref receiveBuffer, receiveBuffer.Length * 2);
                }
                while (Volatile.Read(ref queuedFrames) >= MaxQueuedFrames)
                {
                    try { await Task.Delay(20, cancel.Token).ConfigureAwait(false); }
                    catch (OperationCanceledException) { return; }
                }
                WebSocketReceiveResult r;
                try
                {
                    r = await ws.ReceiveAsync(new ArraySegment<byte>(receiveBuffer, count, receiveBuffer.Length - count), cancel.Token).ConfigureAwait(false);
                }
                catch (Exception e)
                {
                    Report(new TransportEvent { Kind = TransportEventKind.Closed, Code = 1006, Reason = e.Message });
                    return;
                }
                if (r.MessageType == WebSocketMessageType.Close)
                {
                    int code = r.CloseStatus.HasValue ? (int)r.CloseStatus.Value : 1005;
                    Report(new TransportEvent { Kind = TransportEventKind.Closed, Code = code, Reason = r.CloseStatusDescription ?? "" });
                    bool ours;
                    lock (gate) { ours = closing; closing = true; }
                    if (!ours)
                    {
                        // Answer the server's close, briefly: it is gone either way.
                        using (var answer = new CancellationTokenSource(CloseWaitMs))
                        {
                            try { await ws.CloseOutputAsync((WebSocketCloseStatus)code, "", answer.Token).ConfigureAwait(false); } catch (Exception) { }
                        }
                    }
                    return;
                }
                count += r.Count;
                if (r.EndOfMessage)
                {
                    if (r.MessageType == WebSocketMessageType.Text)
                        Report(new TransportEvent { Kind = TransportEventKind.Text, Text = Encoding.UTF8.GetString(receiveBuffer, 0, count) });
                    count = 0;
                }
            }
        }

        async Task SendLoopAsync()
        {
            while (true)
            {
                await outboxReady.WaitAsync(cancel.Token).ConfigureAwait(false);
                string text;
                if (!outbox.TryDequeue(out text)) continue;
                if (text == null)
                {
                    int code;
                    string reason;
                    lock (gate) { code = closeCode; reason = closeReason; }
                    cancel.CancelAfter(CloseWaitMs); // the server's answer ends the receive loop; its silence, this
                    await ws.CloseOutputAsync((WebSocketCloseStatus)code, reason, cancel.Token).ConfigureAwait(false);
                    return;
                }
                int n = Encoding.UTF8.GetByteCount(text);
                if (n > sendBuffer.Length) sendBuffer = new byte[Math.Max(n, sendBuffer.Length * 2)];
                Encoding.UTF8.GetBytes(text, 0, text.Length, sendBuffer, 0);
                await ws.SendAsync(new ArraySegment<byte>(sendBuffer, 0, n), WebSocketMessageType.Text, true, cancel.Token).ConfigureAwait(false);
            }
        }

        /// <summary>
        /// Mono says only "Unable to connect to the remote server", whatever
        /// the answer was. herald refuses before the upgrade with a plain
        /// HTTP answer that says why (and, for 429 and 503, how long to wait
        /// in Retry-After), so the same handshake is sent again by hand and
        /// its answer read. Its limits (connections per key, a draining node)
        /// apply only to a real handshake, so it must be one, not a GET.
        /// </summary>
        static async Task<TransportEvent> RefusalAsync(Uri uri, string token, Exception failure)
        {
            var refused = new TransportEvent { Kind = TransportEventKind.Closed, Refused = true };
            int seen = StatusOf(failure);
            HandshakeAnswer answer;
            try
            {
                answer = await HandshakeAnswer.ReadAsync(uri, token).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                refused.Code = seen;
                refused.Reason = seen != 0 ? "refused with HTTP " + seen + " (" + failure.Message + ")" : "could not connect: " + e.Message;
                return refused;
            }
            if (answer.Status < 400)
            {
                // Accepted this time (the refusal was brief, or never was):
                // the answer says nothing about the failure.
                refused.Code = seen;
                refused.Reason = "the handshake failed: " + failure.Message;
                return refused;
            }
            refused.Code = answer.Status;
            refused.Reason = ErrorText(answer.Body);
            refused.RetryAfterMs = RetryAfterMs(answer.RetryAfter);
            return refused;
        }

        /// <summary>Retry-After in seconds (herald sends no dates), in milliseconds; 0 when absent or unreadable.</summary>
        internal static int RetryAfterMs(string header)
        {
            int s;
            if (header == null || !int.TryParse(header.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out s)) return 0;
            return s > int.MaxValue / 1000 ? int.MaxValue : s * 1000;
        }

        /// <summary>"code: message" of herald's error body, or the body itself.</summary>
        static string ErrorText(string body)
        {
            try
            {
                var err = JsonValue.Parse(body)["error"];
                if (err != null && err["code"] != null)
                    return err["code"].AsString() + ": " + (err["message"] != null ? err["message"].AsString() : "");
            }
            catch (JsonException)
            {
            }
            return body.Length > 200 ? body.Substring(0, 200) : body;
        }

        static int StatusOf(Exception e)
        {
            for (var x = e; x != null; x = x.InnerException)
            {
                var m = StatusInMessage.Match(x.Message);
                if (m.Success && m.Groups[1].Value != "101") return int.Parse(m.Groups[1].Value);
            }
            return 0;
        }
    }
}
