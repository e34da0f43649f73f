// Just enough of UnityEngine's surface to compile the package's Unity layer
// and the ItemPush sample outside Unity (with UNITY_5_3_OR_NEWER defined),
// and to drive HeraldBehaviour's lifecycle the way the engine would.
using System;
using System.Collections.Generic;
using System.Diagnostics;

namespace UnityEngine
{
    public class Object
    {
        /// <summary>What Destroy was called on, for the tests to check (the engine would destroy it at the end of the frame).</summary>
        public static readonly List<Object> Destroyed = new List<Object>();
        /// <summary>What DontDestroyOnLoad was called on.</summary>
        public static readonly List<Object> Persistent = new List<Object>();

        public static void Destroy(Object o) { Destroyed.Add(o); }
        public static void DontDestroyOnLoad(Object o) { Persistent.Add(o); }
    }

    public sealed class GameObject : Object { }

    public class Component : Object
    {
        readonly GameObject owner = new GameObject();
        public GameObject gameObject { get { return owner; } }
    }

    public class Behaviour : Component { }
    public class MonoBehaviour : Behaviour { }

    public static class Time
    {
        static readonly Stopwatch sinceStartup = Stopwatch.StartNew();
        public static double realtimeSinceStartupAsDouble { get { return sinceStartup.Elapsed.TotalSeconds; } }
    }

    public static class Debug
    {
        public static void LogWarning(object message) { Console.WriteLine("warning: " + message); }
        public static void Log(object message) { Console.WriteLine(message); }
    }

    [AttributeUsage(AttributeTargets.Field)]
    public sealed class TooltipAttribute : Attribute { public TooltipAttribute(string tooltip) { } }

    [AttributeUsage(AttributeTargets.Class)]
    public sealed class AddComponentMenu : Attribute { public AddComponentMenu(string menuName) { } }

    public struct Rect { public Rect(float x, float y, float w, float h) { } }

    public static class GUI { public static void Label(Rect r, string text) { } }

    public class AsyncOperation { public event Action<AsyncOperation> completed { add { } remove { } } }
}

namespace UnityEngine.Networking
{
    public class DownloadHandler { public string text { get { return ""; } } }

    public class UnityWebRequestAsyncOperation : UnityEngine.AsyncOperation { }

    public class UnityWebRequest : IDisposable
    {
        public enum Result { InProgress, Success, ConnectionError, ProtocolError, DataProcessingError }
        public static UnityWebRequest Get(string url) { return new UnityWebRequest(); }
        public UnityWebRequestAsyncOperation SendWebRequest() { return new UnityWebRequestAsyncOperation(); }
        public Result result { get { return Result.InProgress; } }
        public string error { get { return null; } }
        public DownloadHandler downloadHandler { get { return new DownloadHandler(); } }
        public void Dispose() { }
    }
}
