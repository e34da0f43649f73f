#if UNITY_5_3_OR_NEWER
using System;
using System.Threading;
using System.Threading.Tasks;
using UnityEngine;

namespace Herald.Unity
{
    /// <summary>
    /// Keeps a HeraldClient for a scene: events run on the main thread from
    /// Update, the connection closes when the object is destroyed or the app
    /// quits (leaving play mode never hangs on it), and a connection that may
    /// have died while the app was paused is replaced as soon as it resumes.
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

        [Tooltip("Seconds of silence after which the connection is replaced")]
        public float deadAfterSeconds = 30;

        /// <summary>Set before Start to connect with tokens from your backend.</summary>
        public Func<CancellationToken, Task<string>> TokenProvider;

        public event Action<HeraldMessage> Message;
        public event Action<string> Connected;
        public event Action<HeraldDisconnect> Disconnected;
        public event Action<Exception> Error;

        HeraldClient client;

        /// <summary>The client, once started.</summary>
        public HeraldClient Client { get { return client; } }

        protected virtual void Start()
        {
            client = new HeraldClient(new HeraldOptions
            {
                Urls = urls,
                Key = key,
                GetToken = TokenProvider,
                Topics = topics,
                DeadAfter = TimeSpan.FromSeconds(deadAfterSeconds),
            });
            client.Message += m => { var h = Message; if (h != null) h(m); };
            client.Connected += u => { var h = Connected; if (h != null) h(u); };
            client.Disconnected += d => { var h = Disconnected; if (h != null) h(d); };
            client.Error += e => { var h = Error; if (h != null) h(e); else Debug.LogWarning("herald: " + e.Message); };
            client.Start();
        }

        protected virtual void Update()
        {
            if (client != null) client.Dispatch();
        }

        protected virtual void OnApplicationPause(bool paused)
        {
            // Mobile OSes freeze the app's sockets in the background: do not
            // wait for the dead-connection detector when it comes back.
            if (!paused && client != null) client.Reconnect();
        }

        protected virtual void OnDestroy() { Stop(); }

        protected virtual void OnApplicationQuit() { Stop(); }

        void Stop()
        {
            if (client == null) return;
            client.Dispose(); // bounded: 1.5 s at most, so leaving play mode never hangs
            client = null;
        }
    }
}
#endif
