// HeraldBehaviour driven through the lifecycle calls Unity makes, against a
// real node: events run in Update, a short pause keeps the connection, a
// long one closes it and the resume reconnects at once, autoAck off leaves
// acks to Ack, a reloaded scene's copy does not connect twice, OnDestroy
// returns promptly.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Net;
using System.Threading;
using System.Threading.Tasks;
using Herald;
using Herald.Unity;

sealed class Scene : HeraldBehaviour
{
    public void RunAwake() { Awake(); }
    public void RunStart() { Start(); }
    public void RunUpdate() { Update(); }
    public void Pause(bool paused) { OnApplicationPause(paused); }
    public void Destroy() { OnDestroy(); }
}

static class UnityLayerTests
{
    static string node;
    static int passed, failed;

    static int Main()
    {
        node = Environment.GetEnvironmentVariable("HERALD_A");
        Run("events run in Update; a short pause keeps the connection, a long one is replaced at once on resume", Lifecycle);
        Run("autoAck off: nothing is acked until Ack(m)", ManualAck);
        Run("a throwing Message subscriber does not stop the others, and its message is not acked", ThrowingSubscriber);
        Run("Connect after the key changed makes a new client, for the new key", KeyChange);
        Run("a reloaded scene's persistent copy for the same key destroys itself and never connects", SecondCopy);
        Console.WriteLine("unity layer: {0} passed, {1} failed", passed, failed);
        return failed == 0 ? 0 : 1;
    }

    static void Run(string name, Action test)
    {
        try
        {
            test();
            passed++;
            Console.WriteLine("PASS unity layer: " + name);
        }
        catch (Exception e)
        {
            failed++;
            Console.WriteLine("FAIL unity layer: " + name + ": " + e);
        }
    }

    static Scene NewScene(string key)
    {
        var s = new Scene { urls = new[] { "ws" + node.Substring(4) }, key = key, pauseGraceSeconds = 2 };
        s.RunAwake();
        return s;
    }

    static void Lifecycle()
    {
        var scene = NewScene("u-unity");
        var got = new List<string>();
        var states = new List<HeraldState>();
        int connects = 0, updateThread = Thread.CurrentThread.ManagedThreadId, eventThread = -1;
        scene.Message += m => { got.Add(m.DataJson); eventThread = Thread.CurrentThread.ManagedThreadId; };
        scene.Connected += u => connects++;
        scene.StateChanged += s => states.Add(s);
        Check(UnityEngine.Object.Persistent.Contains(scene.gameObject), "DontDestroyOnLoad in Awake");
        scene.RunStart();
        try
        {
            Frames(scene, () => connects == 1, "connected");
            Check(scene.State == HeraldState.Open && states.Contains(HeraldState.Open), "State and StateChanged say Open");
            Post("{\"key\":\"u-unity\",\"data\":{\"item\":\"Sword\",\"qty\":1}}");
            Frames(scene, () => got.Count == 1, "the message in Update");
            Check(eventThread == updateThread, "the event ran on the thread that called Update");
            scene.Pause(true);
            Check(scene.State == HeraldState.Paused, "Paused");
            Thread.Sleep(100); // a purchase dialog, well within the 2 s grace
            scene.Pause(false);
            Frames(scene, () => false, "nothing", 1.5);
            Check(connects == 1, "a short pause did not cost a reconnect");
            scene.Pause(true);
            var paused = Stopwatch.StartNew();
            while (Online("u-unity")) // no Update meanwhile: the grace runs out on the transport's timer
            {
                Check(paused.Elapsed < TimeSpan.FromSeconds(10), "still online 10 s into a pause with a 2 s grace");
                Thread.Sleep(100);
            }
            scene.Pause(false);
            Frames(scene, () => connects == 2, "a new connection right after a long pause");
        }
        finally
        {
            var sw = Stopwatch.StartNew();
            scene.Destroy();
            Check(sw.Elapsed < TimeSpan.FromSeconds(1), "OnDestroy took " + sw.Elapsed);
            Check(scene.Client == null, "the client is gone");
        }
    }

    static void ManualAck()
    {
        var scene = NewScene("u-unity-manual");
        scene.autoAck = false;
        var got = new List<HeraldMessage>();
        scene.Message += m => got.Add(m);
        scene.RunStart();
        try
        {
            Frames(scene, () => scene.State == HeraldState.Open, "connected");
            var first = Task.Run(() => Post("{\"key\":\"u-unity-manual\",\"data\":1,\"store\":true,\"wait\":\"acked\",\"timeout_ms\":1000}"));
            Frames(scene, () => first.IsCompleted, "the first sender's answer");
            Check(got.Count == 1 && !first.Result.Contains("\"acked\""), "not acked without Ack: " + first.Result);
            var second = Task.Run(() => Post("{\"key\":\"u-unity-manual\",\"data\":2,\"store\":true,\"wait\":\"acked\",\"timeout_ms\":5000}"));
            Frames(scene, () => got.Count == 2, "the second message");
            scene.Ack(got[1]);
            Frames(scene, () => second.IsCompleted, "the second sender's answer");
            Check(second.Result.Contains("\"acked\""), "acked by Ack: " + second.Result);
        }
        finally
        {
            scene.Destroy();
        }
    }

    static void ThrowingSubscriber()
    {
        var scene = NewScene("u-unity-throws");
        int ran = 0;
        var errors = new List<Exception>();
        scene.Message += m => { throw new InvalidOperationException("the inventory is not loaded yet"); };
        scene.Message += m => ran++;
        scene.Error += e => errors.Add(e);
        scene.RunStart();
        try
        {
            Frames(scene, () => scene.State == HeraldState.Open, "connected");
            var sent = Task.Run(() => Post("{\"key\":\"u-unity-throws\",\"data\":1,\"store\":true,\"wait\":\"acked\",\"timeout_ms\":1500}"));
            Frames(scene, () => sent.IsCompleted, "the sender's answer");
            Check(ran == 1, "the second subscriber ran: " + ran);
            Check(errors.Count == 1 && errors[0] is HeraldHandlerException, "one Error, a HeraldHandlerException: " + string.Join("; ", errors));
            Check(!sent.Result.Contains("\"acked\""), "not acked: " + sent.Result);
        }
        finally
        {
            scene.Destroy();
        }
    }

    static void KeyChange()
    {
        var scene = NewScene("u-unity-first");
        scene.minBackoffSeconds = 0; // out of range: brought into it, not refused
        var got = new List<HeraldMessage>();
        scene.Message += m => got.Add(m);
        scene.RunStart();
        try
        {
            Frames(scene, () => scene.State == HeraldState.Open, "connected");
            var first = scene.Client;
            scene.Disconnect();
            scene.key = "u-unity-second";
            scene.Connect();
            Check(scene.Client != first, "a new client for the new key");
            Frames(scene, () => scene.State == HeraldState.Open, "connected again");
            Post("{\"key\":\"u-unity-second\",\"data\":\"for the second\"}");
            Frames(scene, () => got.Count == 1, "the second key's message");
            Check(got[0].DataJson == "\"for the second\"", "it is the second key's: " + got[0].DataJson);
        }
        finally
        {
            scene.Destroy();
        }
    }

    static void SecondCopy()
    {
        var first = NewScene("u-unity-once");
        int connects = 0;
        first.Connected += u => connects++;
        first.RunStart();
        try
        {
            Frames(first, () => connects == 1, "the first copy connected");
            var copy = NewScene("u-unity-once"); // the scene loaded again
            copy.RunStart();
            Check(UnityEngine.Object.Destroyed.Contains(copy.gameObject), "the copy destroyed itself");
            Check(copy.Client == null && copy.State == HeraldState.Idle, "and made no client");
            Check(HeraldBehaviour.ForKey("u-unity-once") == first, "ForKey finds the live one");
            copy.Connect();
            Check(copy.Client == null, "Connect on the copy does nothing");
            copy.Destroy(); // the engine destroys it
            Check(HeraldBehaviour.ForKey("u-unity-once") == first, "the copy's OnDestroy leaves the live one registered");
            Frames(first, () => false, "nothing", 0.5);
            Check(connects == 1 && first.State == HeraldState.Open, "the live connection is untouched");
        }
        finally
        {
            first.Destroy();
        }
        Check(HeraldBehaviour.ForKey("u-unity-once") == null, "gone after OnDestroy");
    }

    static void Frames(Scene s, Func<bool> cond, string what, double seconds = 10)
    {
        var sw = Stopwatch.StartNew();
        while (!cond())
        {
            if (sw.Elapsed > TimeSpan.FromSeconds(seconds))
            {
                if (what == "nothing") return;
                throw new Exception("timed out waiting for " + what);
            }
            s.RunUpdate();
            Thread.Sleep(16); // a frame
        }
    }

    static void Check(bool ok, string what) { if (!ok) throw new Exception(what); }

    static bool Online(string key)
    {
        return Post("{\"key\":\"" + key + "\",\"data\":\"ping\"}").Contains("\"online\":[\"" + key + "\"]");
    }

    static string Post(string json)
    {
        using (var wc = new WebClient())
        {
            wc.Headers[HttpRequestHeader.ContentType] = "application/json";
            return wc.UploadString(node + "/v1/send", json);
        }
    }
}
