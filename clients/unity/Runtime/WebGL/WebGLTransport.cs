#if UNITY_WEBGL && !UNITY_EDITOR
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;

namespace Herald
{
    /// <summary>
    /// A transport on the browser's WebSocket, through HeraldWebSocket.jslib,
    /// for Unity WebGL players (no System.Net.WebSockets, no threads there).
    /// The token goes as ?token=, since a browser sets no headers on a
    /// WebSocket; a refused handshake is asked about by the library, which
    /// reports herald's status, reason and Retry-After.
    ///
    /// Everything runs on the browser's one thread: the library's callbacks
    /// come between frames, queue events here, and the client's Dispatch
    /// takes them from TryReceive.
    /// </summary>
    [Preserve]
    public sealed class WebGLTransport : ITransport
    {
        delegate void OpenCallback(int socket);
        delegate void TextCallback(int socket, IntPtr utf8, int byteLength);
        delegate void CloseCallback(int socket, int code, IntPtr reason, int refused, int retryAfterMs);

        [DllImport("__Internal")] static extern void HeraldWs_SetCallbacks(OpenCallback onOpen, TextCallback onText, CloseCallback onClose);
        [DllImport("__Internal")] static extern int HeraldWs_Open(string url, string token);
        [DllImport("__Internal")] static extern int HeraldWs_Send(int socket, string text);
        [DllImport("__Internal")] static extern void HeraldWs_Close(int socket, int code, string reason);
        [DllImport("__Internal")] static extern void HeraldWs_ScheduleClose(int socket, int delayMs, int code, string reason);
        [DllImport("__Internal")] static extern void HeraldWs_CancelScheduledClose(int socket);
        [DllImport("__Internal")] static extern void HeraldWs_Free(int socket);

        // Native code calls back into static methods only (IL2CPP's
        // MonoPInvokeCallback rule), so the callbacks find their transport
        // by the library's socket id here. Touched only on the browser's one
        // thread.
        static readonly Dictionary<int, WebGLTransport> open = new Dictionary<int, WebGLTransport>();
        static bool callbacksSet;
        static byte[] textBuffer = new byte[16 * 1024];

        readonly Queue<TransportEvent> events = new Queue<TransportEvent>();
        int socket;
        bool closed;

        public void Open(string url, string token)
        {
            if (socket != 0) throw new InvalidOperationException("a transport is opened once");
            if (!callbacksSet)
            {
                HeraldWs_SetCallbacks(OnOpen, OnText, OnClose);
                callbacksSet = true;
            }
            socket = HeraldWs_Open(url, string.IsNullOrEmpty(token) ? null : token);
            open[socket] = this;
        }

        public bool TryReceive(out TransportEvent e)
        {
            if (events.Count == 0)
            {
                e = default(TransportEvent);
                return false;
            }
            e = events.Dequeue();
            return true;
        }

        public void Send(string text)
        {
            if (socket != 0 && !closed) HeraldWs_Send(socket, text); // -1 (not open): dropped, as the contract says
        }

        public void Close(int code, string reason)
        {
            if (socket != 0 && !closed) HeraldWs_Close(socket, code, reason ?? "");
        }

        public void ScheduleClose(int delayMs, int code, string reason)
        {
            if (socket != 0 && !closed) HeraldWs_ScheduleClose(socket, delayMs, code, reason ?? "");
        }

        public void CancelScheduledClose()
        {
            if (socket != 0 && !closed) HeraldWs_CancelScheduledClose(socket);
        }

        public void Dispose()
        {
            if (socket == 0) return;
            open.Remove(socket);
            HeraldWs_Free(socket);
            closed = true;
        }

        [AOT.MonoPInvokeCallback(typeof(OpenCallback))]
        static void OnOpen(int socket)
        {
            WebGLTransport t;
            if (open.TryGetValue(socket, out t)) t.events.Enqueue(new TransportEvent { Kind = TransportEventKind.Opened });
        }

        [AOT.MonoPInvokeCallback(typeof(TextCallback))]
        static void OnText(int socket, IntPtr utf8, int byteLength)
        {
            WebGLTransport t;
            if (!open.TryGetValue(socket, out t)) return;
            // One buffer for every frame: the string is the frame's only garbage.
            if (textBuffer.Length < byteLength) textBuffer = new byte[Math.Max(byteLength, textBuffer.Length * 2)];
            Marshal.Copy(utf8, textBuffer, 0, byteLength);
            t.events.Enqueue(new TransportEvent { Kind = TransportEventKind.Text, Text = Encoding.UTF8.GetString(textBuffer, 0, byteLength) });
        }

        [AOT.MonoPInvokeCallback(typeof(CloseCallback))]
        static void OnClose(int socket, int code, IntPtr reason, int refused, int retryAfterMs)
        {
            WebGLTransport t;
            if (!open.TryGetValue(socket, out t)) return;
            open.Remove(socket);
            t.closed = true;
            t.events.Enqueue(new TransportEvent
            {
                Kind = TransportEventKind.Closed,
                Code = code,
                Reason = Utf8(reason),
                Refused = refused != 0,
                RetryAfterMs = retryAfterMs,
            });
        }

        static string Utf8(IntPtr p)
        {
            if (p == IntPtr.Zero) return "";
            int n = 0;
            while (Marshal.ReadByte(p, n) != 0) n++;
            var bytes = new byte[n];
            Marshal.Copy(p, bytes, 0, n);
            return Encoding.UTF8.GetString(bytes);
        }
    }
}
#endif
