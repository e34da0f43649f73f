namespace Herald
{
    /// <summary>What a transport reports, in the order it happened.</summary>
    public enum TransportEventKind
    {
        /// <summary>The handshake succeeded; frames may follow.</summary>
        Opened,
        /// <summary>A text frame arrived; Text holds it.</summary>
        Text,
        /// <summary>The connection ended or never opened. The last event of a transport.</summary>
        Closed,
    }

    /// <summary>One thing a transport reports to the client's tick.</summary>
    public struct TransportEvent
    {
        public TransportEventKind Kind;

        /// <summary>Text: the frame, decoded from UTF-8.</summary>
        public string Text;

        /// <summary>
        /// Closed after Opened: the close code the server sent, or 1006 when
        /// the connection ended without one. Closed with Refused: the HTTP
        /// status of the node's answer to the handshake, or 0 when no node
        /// answered.
        /// </summary>
        public int Code;

        /// <summary>Closed: the close reason, or what the refusal said ("code: message" of herald's error body).</summary>
        public string Reason;

        /// <summary>Closed: the handshake never completed.</summary>
        public bool Refused;

        /// <summary>Closed with Refused: the answer's Retry-After in milliseconds, or 0 when it had none.</summary>
        public int RetryAfterMs;
    }

    /// <summary>
    /// One connection to a node, as the client's single-threaded core drives
    /// it: every call returns at once, and what happens comes back as events
    /// the core polls from its tick (Dispatch, Unity's Update). A transport
    /// may use threads of its own (ClientWebSocket does) or none (a
    /// browser's WebSocket under WebGL); the core never blocks on it and
    /// never calls it from two threads.
    /// </summary>
    public interface ITransport : System.IDisposable
    {
        /// <summary>
        /// Starts connecting to url (ws:// or wss://, the query complete but
        /// for the token). token, when not null, goes as the transport can
        /// carry it: an Authorization: Bearer header, or ?token= where
        /// headers cannot be set (a browser). A transport is opened once.
        /// </summary>
        void Open(string url, string token);

        /// <summary>The next event, if one is waiting.</summary>
        bool TryReceive(out TransportEvent e);

        /// <summary>Queues a text frame; one sent after the close started is dropped.</summary>
        void Send(string text);

        /// <summary>Starts a clean close; Closed follows.</summary>
        void Close(int code, string reason);

        /// <summary>
        /// Closes cleanly after delayMs on the transport's own timer, unless
        /// CancelScheduledClose comes first. It exists for the app's pause:
        /// a paused app runs no tick, so the core cannot close then itself.
        /// </summary>
        void ScheduleClose(int delayMs, int code, string reason);

        /// <summary>Cancels a ScheduleClose that has not fired.</summary>
        void CancelScheduledClose();
    }
}
