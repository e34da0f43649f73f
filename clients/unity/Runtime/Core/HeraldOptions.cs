using System;
using System.Diagnostics;
using System.Threading;
using System.Threading.Tasks;

namespace Herald
{
    /// <summary>What a HeraldClient connects to and how it behaves.</summary>
    public sealed class HeraldOptions
    {
        /// <summary>
        /// Node addresses (ws:// or wss://, with or without /v1/ws). The client
        /// starts with the first and moves on to the next when one fails.
        /// </summary>
        public string[] Urls;

        /// <summary>The key to connect as, on a node without tokens (development).</summary>
        public string Key;

        /// <summary>
        /// Fetches a connection token from your backend. Called from Dispatch,
        /// on the thread that dispatches (Unity: the main thread, so a
        /// UnityWebRequest may be started in it), before each connection
        /// attempt, so that a token that expired (close 4002) or was refused
        /// is replaced by a fresh one. The client never waits on the Task: it
        /// checks it on each Dispatch, and gives up on it after ConnectTimeout
        /// (cancelling the token). Null: connect with Key.
        /// </summary>
        public Func<CancellationToken, Task<string>> GetToken;

        /// <summary>Topics to receive too.</summary>
        public string[] Topics;

        /// <summary>format=raw: each message's Text is its data alone.</summary>
        public bool Raw;

        /// <summary>
        /// Acknowledge each stored message of the key once every Message
        /// handler returned for it (default true). A handler that throws keeps
        /// the message unacknowledged: it comes again on the next connection.
        /// </summary>
        public bool AutoAck = true;

        /// <summary>Reconnect backoff: full jitter between 0 and MinBackoff·2ⁿ, at most MaxBackoff.</summary>
        public TimeSpan MinBackoff = TimeSpan.FromMilliseconds(200);

        /// <summary>The longest backoff wait.</summary>
        public TimeSpan MaxBackoff = TimeSpan.FromSeconds(30);

        /// <summary>
        /// With no frame from the server for this long the connection counts as
        /// dead and is replaced (Mono notices a dead peer only after minutes).
        /// The client pings at a third of it, so a live server always answers
        /// in time.
        /// </summary>
        public TimeSpan DeadAfter = TimeSpan.FromSeconds(30);

        /// <summary>How long a connection attempt (the token fetch, then the handshake) may take.</summary>
        public TimeSpan ConnectTimeout = TimeSpan.FromSeconds(10);

        /// <summary>How many ids of messages that are not stored are remembered to drop repeats.</summary>
        public int DedupeWindow = 1024;

        /// <summary>
        /// How long the connection outlives Pause (the app in the background).
        /// 10 s by default: an in-app purchase sheet or a permission dialog
        /// pauses an iOS app for a few seconds, and coming back from it must
        /// not cost a reconnect; a longer grace keeps a socket the OS is about
        /// to freeze anyway, and keeps the key "online" for senders while
        /// nothing can be handled.
        /// </summary>
        public TimeSpan PauseGrace = TimeSpan.FromSeconds(10);

        /// <summary>
        /// After Resume, how long the connection may take to prove it is alive
        /// (any frame, the answer to a ping) before it is replaced.
        /// </summary>
        public TimeSpan ProbeTimeout = TimeSpan.FromSeconds(3);

        /// <summary>Makes transports; the default is ClientWebSocket, or the browser's WebSocket under WebGL.</summary>
        public Func<ITransport> Transport;

        /// <summary>Random source for jitter (tests fix it).</summary>
        public Random Random;

        /// <summary>
        /// Monotonic milliseconds that every timer of the client is measured
        /// against (Unity: Time.realtimeSinceStartupAsDouble·1000; tests: a
        /// clock of their own). Null: a Stopwatch.
        /// </summary>
        public Func<long> Clock;

        internal static Func<long> StopwatchClock()
        {
            var sw = Stopwatch.StartNew();
            return () => sw.ElapsedMilliseconds;
        }

        internal static ITransport DefaultTransport()
        {
#if UNITY_WEBGL && !UNITY_EDITOR
            return new WebGLTransport();
#else
            return new ClientWebSocketTransport();
#endif
        }
    }
}
