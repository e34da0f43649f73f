#if UNITY_5_3_OR_NEWER
using System;
using System.Threading;
using System.Threading.Tasks;
using Herald;
using Herald.Unity;
using UnityEngine;
using UnityEngine.Networking;

namespace Herald.Samples
{
    /// <summary>
    /// The web-shop story: the player buys a sword on the web site, the game
    /// server calls herald (POST /v1/send {"key":"player-42","data":{"item":
    /// "Sword","qty":1},"store":true}), and this shows "Sword ×1 arrived".
    /// Add it to a GameObject next to a HeraldBehaviour; point tokenUrl at
    /// your backend's endpoint that returns a herald connection token for the
    /// signed-in player.
    /// </summary>
    public class ItemPush : MonoBehaviour
    {
        public HeraldBehaviour herald;
        [Tooltip("Your backend's URL that answers with a connection token (plain text)")]
        public string tokenUrl = "https://game.example.org/herald-token";

        string last = "waiting for items…";

        void Awake()
        {
            herald.TokenProvider = FetchToken;
            herald.Message += OnItem;
            herald.Disconnected += d => { if (d.Final) last = "disconnected: " + d.Reason; };
        }

        void OnItem(HeraldMessage m)
        {
            var item = m.Data["item"];
            var qty = m.Data["qty"];
            if (item == null) return;
            // A throw here (a save that failed, say) leaves the purchase
            // unacknowledged: it comes again on the next connection.
            last = item.AsString() + " ×" + (qty != null ? qty.AsLong() : 1) + " arrived";
        }

        // Called from HeraldBehaviour's Update, on the main thread, where
        // UnityWebRequest must start. The client checks the Task on each
        // frame and never waits on it, so completing it from the request's
        // completed callback is all it takes.
        Task<string> FetchToken(CancellationToken ct)
        {
            var done = new TaskCompletionSource<string>();
            var req = UnityWebRequest.Get(tokenUrl);
            req.SendWebRequest().completed += op =>
            {
                if (req.result == UnityWebRequest.Result.Success) done.TrySetResult(req.downloadHandler.text.Trim());
                else done.TrySetException(new Exception("token: " + req.error));
                req.Dispose();
            };
            return done.Task;
        }

        void OnGUI() { GUI.Label(new Rect(20, 20, 600, 40), last); }
    }
}
#endif
