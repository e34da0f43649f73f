#if UNITY_WEBGL && !UNITY_EDITOR
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;
using AOT;

namespace Herald
{
    /// <summary>
    /// The transport of Unity WebGL builds, on the browser's WebSocket
    /// through HeraldWebSocket.jslib (WebGL has no ClientWebSocket and no
    /// threads). The browser calls back on the page's one thread, between
    /// frames; each callback only queues an event, which the client's tick
    /// takes with TryReceive. The token goes as ?token=, since a browser
    /// cannot set headers on a WebSocket; a refused handshake comes back
    /// diagnosed by the library (the node's status, herald's error code and
    /// message, Retry-After).
    /// </summary>
    [Preserve]
    public sealed class WebGLTransport : ITransport
    {
        /// <summary>A frame larger than this ends the connection (1009), rather than the game's memory.</summary>
        const int MaxFrameBytes = 16 << 20;

        delegate void OpenCallback(int socket);
        delegate void TextCallback(int socket, IntPtr utf8, int byteLength);
        delegate void CloseCallback(int socket, int code, IntPtr reason, int refused, int retryAfterMs);

        // Strings go as NUL-terminated UTF-8 byte arrays (a byte[] is passed
        // as a pointer to its first element): how string itself is
        // marshalled differs between Mono and IL2CPP versions, and the
        // library reads UTF-8.
        [DllImport("__Internal")]
        static extern void HeraldWs_SetCallbacks(OpenCallback onOpen, TextCallback onText, CloseCallback onClose);
        [DllImport("__Internal")]
        static extern int HeraldWs_Open(byte[] url, byte[] token);
        [DllImport("__Internal")]
        static extern int HeraldWs_Send(int socket, byte[] text);
        [DllImport("__Internal")]
        static extern void HeraldWs_Close(int socket, int code, byte[] reason);
        [DllImport("__Internal")]
        static extern void HeraldWs_ScheduleClose(int socket, int delayMs, int code, byte[] reason);
        [DllImport("__Internal")]
        static extern void HeraldWs_CancelScheduledClose(int socket);
        [DllImport("__Internal")]
        static extern void HeraldWs_Free(int socket);

        // Native callbacks must be static methods (IL2CPP turns each
        // [MonoPInvokeCallback] method into one C function, with no target
        // object), so one registry maps the library's socket ids to their
        // transports. Everything runs on the page's one thread: no lock.
        static readonly Dictionary<int, WebGLTransport> Sockets = new Dictionary<int, WebGLTransport>();
        // Held here so the delegates handed to the library are never collected.
        static readonly OpenCallback OnOpenCallback = OnOpen;
        static readonly TextCallback OnTextCallback = OnText;
        static readonly CloseCallback OnCloseCallback = OnClose;
        static bool callbacksSet;
        // Reused for every frame in and out: one thread, one frame at a time.
        static byte[] receiveBuffer = new byte[16 * 1024];
        static byte[] sendBuffer = new byte[1024];

        readonly Queue<TransportEvent> events = new Queue<TransportEvent>();
        int socket;
        bool opened, closing, ended, disposed;

        /// <summary>Starts connecting; the token goes as ?token= (URL-encoded by the library).</summary>
        public void Open(string url, string token)
        {
            if (opened) throw new InvalidOperationException("a transport is opened once");
            if (disposed) throw new ObjectDisposedException("WebGLTransport");
            opened = true;
            if (!callbacksSet)
            {
                HeraldWs_SetCallbacks(OnOpenCallback, OnTextCallback, OnCloseCallback);
                callbacksSet = true;
            }
            // The library never calls back from inside Open: the socket is
            // registered before any callback for it can come.
            socket = HeraldWs_Open(Terminated(url ?? ""), string.IsNullOrEmpty(token) ? null : Terminated(token));
            Sockets[socket] = this;
        }

        /// <summary>The next event, if one is waiting.</summary>
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

        /// <summary>Sends a text frame; dropped before the open and once the close started.</summary>
        public void Send(string text)
        {
            if (socket == 0 || closing || ended || disposed || text == null) return;
            HeraldWs_Send(socket, Encode(text));
        }

        /// <summary>Starts a clean close; Closed follows.</summary>
        public void Close(int code, string reason)
        {
            if (socket == 0 || closing || ended || disposed) return;
            closing = true;
            HeraldWs_Close(socket, code, Terminated(reason ?? ""));
        }

        /// <summary>Closes cleanly after delayMs on the browser's timer, which runs while the game's Update does not.</summary>
        public void ScheduleClose(int delayMs, int code, string reason)
        {
            if (socket == 0 || closing || ended || disposed) return;
            HeraldWs_ScheduleClose(socket, delayMs, code, Terminated(reason ?? ""));
        }

        /// <summary>Cancels a ScheduleClose that has not fired.</summary>
        public void CancelScheduledClose()
        {
            if (socket == 0 || ended || disposed) return;
            HeraldWs_CancelScheduledClose(socket);
        }

        /// <summary>Drops the socket at once; no event follows.</summary>
        public void Dispose()
        {
            if (disposed) return;
            disposed = true;
            if (socket == 0) return;
            Sockets.Remove(socket);
            if (!ended) HeraldWs_Free(socket);
        }

        [MonoPInvokeCallback(typeof(OpenCallback))]
        static void OnOpen(int socket)
        {
            WebGLTransport t;
            if (!Sockets.TryGetValue(socket, out t)) return;
            t.events.Enqueue(new TransportEvent { Kind = TransportEventKind.Opened });
        }

        [MonoPInvokeCallback(typeof(TextCallback))]
        static void OnText(int socket, IntPtr utf8, int byteLength)
        {
            WebGLTransport t;
            if (!Sockets.TryGetValue(socket, out t) || t.closing) return;
            if (byteLength > MaxFrameBytes)
            {
                t.Close(1009, "frame over " + MaxFrameBytes + " bytes");
                return;
            }
            if (receiveBuffer.Length < byteLength) receiveBuffer = new byte[Math.Max(byteLength, receiveBuffer.Length * 2)];
            Marshal.Copy(utf8, receiveBuffer, 0, byteLength);
            t.events.Enqueue(new TransportEvent { Kind = TransportEventKind.Text, Text = Encoding.UTF8.GetString(receiveBuffer, 0, byteLength) });
        }

        [MonoPInvokeCallback(typeof(CloseCallback))]
        static void OnClose(int socket, int code, IntPtr reason, int refused, int retryAfterMs)
        {
            WebGLTransport t;
            if (!Sockets.TryGetValue(socket, out t)) return;
            // The library forgets the socket after its one onClose.
            Sockets.Remove(socket);
            t.ended = true;
            t.events.Enqueue(new TransportEvent
            {
                Kind = TransportEventKind.Closed,
                Code = code,
                Reason = ReadTerminated(reason),
                Refused = refused != 0,
                RetryAfterMs = retryAfterMs,
            });
        }

        /// <summary>text as NUL-terminated UTF-8, in the shared send buffer: valid until the next call.</summary>
        static byte[] Encode(string text)
        {
            int n = Encoding.UTF8.GetMaxByteCount(text.Length) + 1;
            if (sendBuffer.Length < n) sendBuffer = new byte[Math.Max(n, sendBuffer.Length * 2)];
            int len = Encoding.UTF8.GetBytes(text, 0, text.Length, sendBuffer, 0);
            sendBuffer[len] = 0;
            return sendBuffer;
        }

        /// <summary>s as a NUL-terminated UTF-8 array of its own (for rare calls: open, close).</summary>
        static byte[] Terminated(string s)
        {
            var b = new byte[Encoding.UTF8.GetByteCount(s) + 1];
            Encoding.UTF8.GetBytes(s, 0, s.Length, b, 0);
            return b;
        }

        static string ReadTerminated(IntPtr p)
        {
            if (p == IntPtr.Zero) return "";
            int n = 0;
            while (Marshal.ReadByte(p, n) != 0) n++;
            if (receiveBuffer.Length < n) receiveBuffer = new byte[n];
            Marshal.Copy(p, receiveBuffer, 0, n);
            return Encoding.UTF8.GetString(receiveBuffer, 0, n);
        }
    }
}
#endif
