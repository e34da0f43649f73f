// A stand-in for UnityEngine's AOT.MonoPInvokeCallbackAttribute, so the
// WebGL transport compiles under mcs outside Unity. IL2CPP reads the real
// one to emit a C function for each callback; here it only has to exist.
using System;

namespace AOT
{
    [AttributeUsage(AttributeTargets.Method)]
    public sealed class MonoPInvokeCallbackAttribute : Attribute
    {
        public MonoPInvokeCallbackAttribute(Type type) { }
    }
}
