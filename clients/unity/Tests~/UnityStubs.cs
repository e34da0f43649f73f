// Just enough of UnityEngine's surface to compile the package's Unity layer
// and the ItemPush sample outside Unity (with UNITY_5_3_OR_NEWER defined),
// and to drive HeraldBehaviour's lifecycle the way the engine would.
using System;

namespace UnityEngine
{
    public class Object { }
    public class Component : Object { }
    public class Behaviour : Component { }
    public class MonoBehaviour : Behaviour { }

    public static class Debug
    {
        public static void LogWarning(object message) { Console.WriteLine("warning: " + message); }
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
