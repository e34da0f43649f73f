using System;
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
        /// Fetches a connection token from your backend. Called before each
        /// connection attempt, so that a token that expired (close 4002) or was
        /// refused is replaced by a fresh one. Null: connect with Key.
        /// </summary>
        public Func<CancellationToken, Task<string>> GetToken;

        /// <summary>Topics to receive too.</summary>
        public string[] Topics;

        /// <summary>format=raw: each message's Text is its data alone.</summary>
        public bool Raw;

        /// <summary>Acknowledge each stored message of the key once it was handed to the app (default true).</summary>
        public bool AutoAck = true;

        /// <summary>Reconnect backoff: full jitter between 0 and MinBackoff·2ⁿ, at most MaxBackoff.</summary>
        public TimeSpan MinBackoff = TimeSpan.FromMilliseconds(200);
        public TimeSpan MaxBackoff = TimeSpan.FromSeconds(30);

        /// <summary>
        /// With no frame from the server for this long the connection counts as
        /// dead and is replaced (Mono notices a dead peer only after minutes).
        /// The client pings at a third of it, so a live server always answers
        /// in time.
        /// </summary>
        public TimeSpan DeadAfter = TimeSpan.FromSeconds(30);

        /// <summary>How long a connection attempt may take.</summary>
        public TimeSpan ConnectTimeout = TimeSpan.FromSeconds(10);

        /// <summary>How many ids of messages that are not stored are remembered to drop repeats.</summary>
        public int DedupeWindow = 1024;

        /// <summary>
        /// When set, events are posted to it (Unity's main thread context, say);
        /// otherwise they wait until the app calls Dispatch.
        /// </summary>
        public SynchronizationContext Context;

        /// <summary>Makes transports; the default is ClientWebSocket.</summary>
        public Func<ISocketTransport> Transport;

        /// <summary>Random source for jitter (tests fix it).</summary>
        public Random Random;
    }
}
