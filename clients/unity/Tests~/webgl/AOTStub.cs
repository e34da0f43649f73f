// What Unity's WebGL player provides and Mono does not: the attribute IL2CPP
// needs on a static method native code calls back. Only for compiling
// WebGLTransport.cs under mcs (webgl_test.go); Unity has its own.
namespace AOT
{
    [System.AttributeUsage(System.AttributeTargets.Method)]
    public sealed class MonoPInvokeCallbackAttribute : System.Attribute
    {
        public MonoPInvokeCallbackAttribute(System.Type type) { }
    }
}
