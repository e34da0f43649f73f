using System;
using System.Collections.Generic;
using System.IO;
using System.Net;
using System.Net.WebSockets;
using System.Text;
using System.Text.RegularExpressions;
using System.Threading;
using System.Threading.Tasks;

namespace Herald
{
    /// <summary>One frame read from a transport: a text message or the close.</summary>
    public struct TransportFrame
    {
        public bool IsClose;
        public string Text;
        public int CloseCode;       // 1006 when the connection ended without a close frame
        public string CloseReason;
    }

    /// <summary>
    /// A WebSocket as the client needs it. The default is ClientWebSocket;
    /// a WebGL build would plug in a browser WebSocket behind the same calls.
    /// </summary>
    public interface ISocketTransport : IDisposable
    {
        Task ConnectAsync(Uri uri, IDictionary<string, string> headers, CancellationToken ct);
        Task<TransportFrame> ReceiveAsync(CancellationToken ct);
        Task SendAsync(string text, CancellationToken ct);
        Task CloseAsync(int code, string reason, CancellationToken ct);
    }

    /// <summary>The handshake was answered with an HTTP status instead of 101.</summary>
    public sealed class HandshakeException : Exception
    {
        /// <summary>The HTTP status, or 0 when the server was not reached.</summary>
        public int Status { get; private set; }

        public HandshakeException(int status, string message, Exception inner) : base(message, inner)
        {
            Status = status;
        }
    }

    /// <summary>A transport on System.Net.WebSockets.ClientWebSocket.</summary>
    [Preserve]
    public sealed class ClientWebSocketTransport : ISocketTransport
    {
        // Mono and .NET both say "... status code '401' when status code '101' was expected."
        static readonly Regex StatusInMessage = new Regex(@"'(\d{3})'");

        readonly ClientWebSocket ws = new ClientWebSocket();
        readonly byte[] buffer = new byte[16 * 1024];
        readonly SemaphoreSlim sendLock = new SemaphoreSlim(1, 1);

        public async Task ConnectAsync(Uri uri, IDictionary<string, string> headers, CancellationToken ct)
        {
            if (headers != null)
                foreach (var h in headers) ws.Options.SetRequestHeader(h.Key, h.Value);
            // Keep-alive pongs from the client say nothing about the server:
            // liveness is the client's own ping (see HeraldOptions.DeadAfter).
            ws.Options.KeepAliveInterval = TimeSpan.Zero;
            try
            {
                await ws.ConnectAsync(uri, ct).ConfigureAwait(false);
            }
            catch (WebSocketException e)
            {
                int status = StatusOf(e);
                string why = e.Message;
                if (status == 0)
                {
                    // Mono says only "Unable to connect to the remote server",
                    // whatever the answer was. herald refuses before the
                    // upgrade, so the same request without it gets the same
                    // answer, which says why.
                    var answer = await RefusalAsync(uri, headers).ConfigureAwait(false);
                    if (answer.Key != 0) { status = answer.Key; why = answer.Value; }
                }
                throw new HandshakeException(status, why, e);
            }
        }

        /// <summary>
        /// Asks over plain HTTP why a handshake was refused: the status and the
        /// error's code and message, or status 0 when the node is unreachable.
        /// </summary>
        static async Task<KeyValuePair<int, string>> RefusalAsync(Uri uri, IDictionary<string, string> headers)
        {
            var http = new UriBuilder(uri);
            http.Scheme = uri.Scheme == "wss" ? "https" : "http";
            try
            {
                var req = (HttpWebRequest)WebRequest.Create(http.Uri);
                req.Timeout = 5000;
                if (headers != null)
                    foreach (var h in headers) req.Headers[h.Key] = h.Value;
                HttpWebResponse resp;
                try
                {
                    resp = (HttpWebResponse)await req.GetResponseAsync().ConfigureAwait(false);
                }
                catch (WebException e)
                {
                    resp = e.Response as HttpWebResponse;
                    if (resp == null) return new KeyValuePair<int, string>(0, e.Message);
                }
                using (resp)
                using (var r = new StreamReader(resp.GetResponseStream()))
                {
                    string body = await r.ReadToEndAsync().ConfigureAwait(false);
                    return new KeyValuePair<int, string>((int)resp.StatusCode, ErrorText(body));
                }
            }
            catch (Exception e)
            {
                return new KeyValuePair<int, string>(0, e.Message);
            }
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

        public async Task<TransportFrame> ReceiveAsync(CancellationToken ct)
        {
            var text = new StringBuilder();
            var decoder = Encoding.UTF8.GetDecoder();
            var chars = new char[Encoding.UTF8.GetMaxCharCount(buffer.Length)];
            while (true)
            {
                WebSocketReceiveResult r;
                try
                {
                    r = await ws.ReceiveAsync(new ArraySegment<byte>(buffer), ct).ConfigureAwait(false);
                }
                catch (WebSocketException e)
                {
                    return new TransportFrame { IsClose = true, CloseCode = 1006, CloseReason = e.Message };
                }
                if (r.MessageType == WebSocketMessageType.Close)
                {
                    int code = r.CloseStatus.HasValue ? (int)r.CloseStatus.Value : 1005;
                    return new TransportFrame { IsClose = true, CloseCode = code, CloseReason = r.CloseStatusDescription ?? "" };
                }
                int n = decoder.GetChars(buffer, 0, r.Count, chars, 0, r.EndOfMessage);
                text.Append(chars, 0, n);
                if (r.EndOfMessage) return new TransportFrame { Text = text.ToString() };
            }
        }

        public async Task SendAsync(string text, CancellationToken ct)
        {
            var bytes = Encoding.UTF8.GetBytes(text);
            await sendLock.WaitAsync(ct).ConfigureAwait(false);
            try
            {
                await ws.SendAsync(new ArraySegment<byte>(bytes), WebSocketMessageType.Text, true, ct).ConfigureAwait(false);
            }
            finally
            {
                sendLock.Release();
            }
        }

        public async Task CloseAsync(int code, string reason, CancellationToken ct)
        {
            if (ws.State != WebSocketState.Open) return;
            await ws.CloseOutputAsync((WebSocketCloseStatus)code, reason, ct).ConfigureAwait(false);
        }

        public void Dispose()
        {
            try { ws.Abort(); } catch (Exception) { }
            ws.Dispose();
        }
    }
}
