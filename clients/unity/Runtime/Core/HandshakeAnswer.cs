using System;
using System.IO;
using System.Net.Security;
using System.Net.Sockets;
using System.Text;
using System.Threading.Tasks;

namespace Herald
{
    /// <summary>
    /// A WebSocket handshake sent by hand over TCP (TLS for wss://), and the
    /// node's HTTP answer to it: the status, Retry-After and the body. Only
    /// the ClientWebSocket transport uses it, to learn why a handshake was
    /// refused; an answer of 101 is closed at once.
    /// </summary>
    internal sealed class HandshakeAnswer
    {
        const int TimeoutMs = 5000;
        const int MaxHeadBytes = 16 * 1024;
        const int MaxBodyBytes = 64 * 1024;

        public int Status;
        public string RetryAfter;
        public string Body = "";

        public static async Task<HandshakeAnswer> ReadAsync(Uri uri, string token)
        {
            var work = ExchangeAsync(uri, token);
            if (await Task.WhenAny(work, Task.Delay(TimeoutMs)).ConfigureAwait(false) != work)
                throw new TimeoutException("no answer within " + TimeoutMs / 1000 + " s");
            return await work.ConfigureAwait(false);
        }

        static async Task<HandshakeAnswer> ExchangeAsync(Uri uri, string token)
        {
            using (var tcp = new TcpClient())
            {
                await tcp.ConnectAsync(uri.Host, uri.Port).ConfigureAwait(false);
                Stream s = tcp.GetStream();
                if (uri.Scheme == "wss")
                {
                    var tls = new SslStream(s);
                    await tls.AuthenticateAsClientAsync(uri.Host).ConfigureAwait(false);
                    s = tls;
                }
                using (s)
                {
                    var key = new byte[16];
                    new Random().NextBytes(key);
                    var req = new StringBuilder();
                    req.Append("GET ").Append(uri.PathAndQuery).Append(" HTTP/1.1\r\n");
                    req.Append("Host: ").Append(uri.IsDefaultPort ? uri.Host : uri.Host + ":" + uri.Port).Append("\r\n");
                    req.Append("Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n");
                    req.Append("Sec-WebSocket-Key: ").Append(Convert.ToBase64String(key)).Append("\r\n");
                    if (token != null) req.Append("Authorization: Bearer ").Append(token).Append("\r\n");
                    req.Append("Accept: application/json\r\n\r\n");
                    var bytes = Encoding.ASCII.GetBytes(req.ToString());
                    await s.WriteAsync(bytes, 0, bytes.Length).ConfigureAwait(false);
                    return await ParseAsync(s).ConfigureAwait(false);
                }
            }
        }

        static async Task<HandshakeAnswer> ParseAsync(Stream s)
        {
            var buf = new byte[MaxHeadBytes + MaxBodyBytes];
            int n = 0, headEnd = -1;
            while (headEnd < 0)
            {
                if (n >= MaxHeadBytes) throw new InvalidDataException("an answer's head over " + MaxHeadBytes + " bytes");
                int r = await s.ReadAsync(buf, n, MaxHeadBytes - n).ConfigureAwait(false);
                if (r == 0) throw new EndOfStreamException("the node closed the connection without an answer");
                n += r;
                headEnd = IndexOfBlankLine(buf, n);
            }
            var a = new HandshakeAnswer();
            var lines = Encoding.ASCII.GetString(buf, 0, headEnd).Split(new[] { "\r\n" }, StringSplitOptions.None);
            var status = lines[0].Split(' ');
            if (status.Length < 2 || !int.TryParse(status[1], out a.Status)) throw new InvalidDataException("not an HTTP answer: " + lines[0]);
            if (a.Status == 101) return a; // accepted: nothing to read, and the socket is closed on return
            int length = -1;
            for (int i = 1; i < lines.Length; i++)
            {
                int colon = lines[i].IndexOf(':');
                if (colon <= 0) continue;
                string name = lines[i].Substring(0, colon).Trim(), value = lines[i].Substring(colon + 1).Trim();
                if (name.Equals("Retry-After", StringComparison.OrdinalIgnoreCase)) a.RetryAfter = value;
                else if (name.Equals("Content-Length", StringComparison.OrdinalIgnoreCase)) int.TryParse(value, out length);
            }
            int bodyStart = headEnd + 4;
            int want = length < 0 ? 0 : Math.Min(length, MaxBodyBytes);
            while (n - bodyStart < want)
            {
                int r = await s.ReadAsync(buf, n, bodyStart + want - n).ConfigureAwait(false);
                if (r == 0) break;
                n += r;
            }
            a.Body = Encoding.UTF8.GetString(buf, bodyStart, Math.Max(0, Math.Min(n - bodyStart, MaxBodyBytes)));
            return a;
        }

        static int IndexOfBlankLine(byte[] b, int n)
        {
            for (int i = 0; i + 3 < n; i++)
                if (b[i] == '\r' && b[i + 1] == '\n' && b[i + 2] == '\r' && b[i + 3] == '\n') return i;
            return -1;
        }
    }
}
