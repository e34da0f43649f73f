using System;

namespace Herald
{
    /// <summary>
    /// Marks code IL2CPP's managed stripping must keep. Unity honours any
    /// attribute named PreserveAttribute, so the package needs no link.xml.
    /// </summary>
    [AttributeUsage(AttributeTargets.Assembly | AttributeTargets.Class | AttributeTargets.Struct |
        AttributeTargets.Method | AttributeTargets.Constructor | AttributeTargets.Field |
        AttributeTargets.Property | AttributeTargets.Interface | AttributeTargets.Enum, Inherited = false)]
    public sealed class PreserveAttribute : Attribute
    {
    }
}
