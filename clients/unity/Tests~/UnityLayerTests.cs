// HeraldBehaviour driven through the lifecycle calls Unity makes, against a
// real node: events run in Update, OnApplicationPause(false) reconnects at
// once, OnDestroy returns promptly.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Net;
using System.Text;
using System.Threading;
using Herald;
using Herald.Unity;

sealed class Scene : HeraldBehaviour
{
    public void RunStart() { Start(); }
    public void RunUpdate() { Update(); }
    public void Pause(bool paused) { OnApplicationPause(paused); }
    public void Destroy() { OnDestroy(); }
}

static class UnityLayerTests
{
    static int Main()
    {
        string node = Environment.GetEnvironmentVariable("HERALD_A");
        var scene = new Scene { urls = new[] { "ws" + node.Substring(4) }, key = "u-unity", deadAfterSeconds = 30 };
        var got = new List<string>();
        int connects = 0, updateThread = Thread.CurrentThread.ManagedThreadId, eventThread = -1;
        scene.Message += m => { got.Add(m.DataJson); eventThread = Thread.CurrentThread.ManagedThreadId; };
        scene.Connected += u => connects++;
        scene.RunStart();
        try
        {
            Frames(scene, () => connects == 1, "connected");
            Post(node, "{\"key\":\"u-unity\",\"data\":{\"item\":\"Sword\",\"qty\":1}}");
            Frames(scene, () => got.Count == 1, "the message in Update");
            Check(eventThread == updateThread, "the event ran on the thread that called Update");
            scene.Pause(true);
            scene.Pause(false);
            Frames(scene, () => connects == 2, "a new connection right after the app resumed");
            var sw = Stopwatch.StartNew();
            scene.Destroy();
            Check(sw.Elapsed < TimeSpan.FromSeconds(2), "OnDestroy took " + sw.Elapsed);
            Check(scene.Client == null, "the client is gone");
            Console.WriteLine("unity layer: 1 passed, 0 failed");
            return 0;
        }
        catch (Exception e)
        {
            Console.WriteLine("unity layer FAIL: " + e.Message);
            Console.WriteLine("unity layer: 0 passed, 1 failed");
            return 1;
        }
    }

    static void Frames(Scene s, Func<bool> cond, string what)
    {
        var sw = Stopwatch.StartNew();
        while (!cond())
        {
            if (sw.Elapsed > TimeSpan.FromSeconds(10)) throw new Exception("timed out waiting for " + what);
            s.RunUpdate();
            Thread.Sleep(16); // a frame
        }
    }

    static void Check(bool ok, string what) { if (!ok) throw new Exception(what); }

    static void Post(string node, string json)
    {
        using (var wc = new WebClient())
        {
            wc.Headers[HttpRequestHeader.ContentType] = "application/json";
            wc.UploadString(node + "/v1/send", json);
        }
    }
}
