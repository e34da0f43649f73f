#if UNITY_5_3_OR_NEWER
using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;
using UnityEngine;

namespace Herald.Unity
{
    /// <summary>
    /// Keeps a HeraldClient for the game: its tick runs in Update, so every
    /// event runs on the main thread (and TokenProvider may use
    /// UnityWebRequest); OnApplicationPause holds acks and keeps the
    /// connection for PauseGrace, then probes it on resume instead of
    /// dropping it; the connection closes when the object is destroyed or the
    /// app quits, without waiting.
    ///
    /// With dontDestroyOnLoad (the default) it survives scene loads, so that
    /// the connection and its resume points do too. A scene that is loaded
    /// again brings its own copy: a copy for a key that already has a
    /// persistent HeraldBehaviour destroys itself in Awake and never
    /// connects. Scripts of such a scene find the live one with ForKey.
    /// </summary>
    [Preserve]
    [AddComponentMenu("Herald/Herald Connection")]
    public class HeraldBehaviour : MonoBehaviour
    {
        [Tooltip("Node addresses, ws:// or wss://")]
        public string[] urls = { "ws://127.0.0.1:8080" };

        [Tooltip("Key to connect as on a development node; leave empty when TokenProvider is set")]
        public string key;

        [Tooltip("Topics to receive too")]
        public string[] topics;

        [Tooltip("Acknowledge each stored message once every Message handler returned; off: call Ack yourself")]
        public bool autoAck = true;

        [Tooltip("Reconnect backoff: the first wait is at most this many seconds")]
        public float minBackoffSeconds = 0.2f;

        [Tooltip("Reconnect backoff: no wait is longer than this many seconds")]
        public float maxBackoffSeconds = 30;

        [Tooltip("Seconds of silence after which the connection is replaced")]
        public float deadAfterSeconds = 30;

        [Tooltip("Seconds the connection is kept while the app is paused (a purchase dialog must not cost a reconnect)")]
        public float pauseGraceSeconds = 10;

        [Tooltip("Survive scene loads: a scene change must not cost a reconnect")]
        public bool dontDestroyOnLoad = true;

        [Tooltip("Connect in Start; off: call Connect yourself")]
        public bool connectOnStart = true;

        /// <summary>
        /// Set before Connect (or Start) to connect with tokens from your
        /// backend. It is called from Update, on the main thread; return a
        /// Task that you complete when the token is there (a
        /// TaskCompletionSource completed from UnityWebRequest's completed).
        /// </summary>
        public Func<CancellationToken, Task<string>> TokenProvider;

        /// <summary>
        /// A message, handed over once, from Update. Each handler is the
        /// client's own: one that throws is reported on Error, the others
        /// still run, and the message is not acknowledged.
        /// </summary>
        public event Action<HeraldMessage> Message
        {
            // Subscribed on the client itself, not behind one forwarding
            // handler: the client runs each handler on its own and acks
            // only when all returned, which a forwarder would hide.
            add { message += value; if (client != null) client.Message += value; }
            remove { message -= value; if (client != null) client.Message -= value; }
        }
        Action<HeraldMessage> message;
        /// <summary>A connection opened.</summary>
        public event Action<string> Connected;
        /// <summary>A connection ended or was refused.</summary>
        public event Action<HeraldDisconnect> Disconnected;
        /// <summary>Something the client survived; logged as a warning when nobody listens.</summary>
        public event Action<Exception> Error;
        /// <summary>The client's state changed.</summary>
        public event Action<HeraldState> StateChanged;

        static readonly List<HeraldBehaviour> persistent = new List<HeraldBehaviour>();

        HeraldClient client;
        bool duplicate;

        /// <summary>The client, once Connect made it; null after OnDestroy.</summary>
        public HeraldClient Client { get { return client; } }

        /// <summary>The client's state; Idle before Connect.</summary>
        public HeraldState State { get { return client != null ? client.State : HeraldState.Idle; } }

        /// <summary>The persistent HeraldBehaviour of a key (empty for a token's), or null.</summary>
        public static HeraldBehaviour ForKey(string key)
        {
            foreach (var b in persistent)
                if (SameKey(b.key, key)) return b;
            return null;
        }

        static bool SameKey(string a, string b) { return (a ?? "") == (b ?? ""); }

        protected virtual void Awake()
        {
            if (!dontDestroyOnLoad) return;
            if (ForKey(key) != null)
            {
                // A reloaded scene's copy: a second connection of the key
                // would start without the first one's resume points.
                duplicate = true;
                Destroy(gameObject);
                return;
            }
            persistent.Add(this);
            DontDestroyOnLoad(gameObject);
        }

        protected virtual void Start()
        {
            if (connectOnStart && !duplicate) Connect();
        }

        /// <summary>Connects (makes the client on first use with the fields as they are now).</summary>
        public void Connect()
        {
            if (duplicate) return;
            if (client != null && madeFor != Settings())
            {
                // The fields changed since the client was made (another
                // player signed in, another server): a new client, so that
                // no resume point or ack of the old key is used on the new.
                client.Dispose();
                client = null;
            }
            if (client == null)
            {
                client = Create();
                madeFor = Settings();
            }
            client.Connect();
        }

        string madeFor;

        string Settings()
        {
            return (key ?? "") + "\n" + string.Join(",", urls ?? new string[0]) + "\n" + string.Join(",", topics ?? new string[0]);
        }

        /// <summary>Closes the connection; Connect opens it again with the same resume points.</summary>
        public void Disconnect()
        {
            if (client != null) client.Disconnect();
        }

        /// <summary>Acknowledges m and every stored message of the key before it (with autoAck off).</summary>
        public void Ack(HeraldMessage m)
        {
            if (client != null) client.Ack(m);
        }

        HeraldClient Create()
        {
            var c = new HeraldClient(new HeraldOptions
            {
                Urls = urls,
                Key = key,
                GetToken = TokenProvider,
                Topics = topics,
                AutoAck = autoAck,
                // Inspector values out of range are brought into it rather
                // than refused, so that a typo never leaves a game unconnected.
                MinBackoff = TimeSpan.FromSeconds(Math.Max(0.05f, minBackoffSeconds)),
                MaxBackoff = TimeSpan.FromSeconds(Math.Max(Math.Max(0.05f, minBackoffSeconds), maxBackoffSeconds)),
                DeadAfter = TimeSpan.FromSeconds(Math.Max(1f, deadAfterSeconds)),
                PauseGrace = TimeSpan.FromSeconds(Math.Max(0f, pauseGraceSeconds)),
                // Unity's clock: it keeps counting while the app is paused.
                Clock = () => (long)(Time.realtimeSinceStartupAsDouble * 1000),
            });
            if (message != null) c.Message += message;
            c.Connected += u => { var h = Connected; if (h != null) h(u); };
            c.Disconnected += d => { var h = Disconnected; if (h != null) h(d); };
            c.Error += e => { var h = Error; if (h != null) h(e); else Debug.LogWarning("herald: " + e.Message); };
            c.StateChanged += s => { var h = StateChanged; if (h != null) h(s); };
            return c;
        }

        protected virtual void Update()
        {
            if (client != null) client.Dispatch();
        }

        protected virtual void OnApplicationPause(bool paused)
        {
            if (client == null) return;
            if (paused) client.Pause();
            else client.Resume();
        }

        protected virtual void OnDestroy()
        {
            persistent.Remove(this);
            Stop();
        }

        protected virtual void OnApplicationQuit() { Stop(); }

        void Stop()
        {
            if (client == null) return;
            client.Dispose(); // never waits: leaving play mode never hangs
            client = null;
        }
    }
}
#endif
