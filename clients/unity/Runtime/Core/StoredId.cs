using System;
using System.Globalization;

namespace Herald
{
    /// <summary>
    /// The id of a stored message, "&lt;ms&gt;-&lt;seq&gt;": ids of one stream
    /// (a key's, or a history topic's) increase. Other messages have opaque ids.
    /// </summary>
    public struct StoredId : IComparable<StoredId>, IEquatable<StoredId>
    {
        public readonly ulong Ms;
        public readonly ulong Seq;

        public StoredId(ulong ms, ulong seq) { Ms = ms; Seq = seq; }

        /// <summary>Parses a stored id; false for any other id.</summary>
        public static bool TryParse(string s, out StoredId id)
        {
            id = new StoredId();
            if (string.IsNullOrEmpty(s)) return false;
            int dash = s.IndexOf('-');
            if (dash <= 0 || dash == s.Length - 1) return false;
            for (int i = 0; i < s.Length; i++)
                if (i != dash && (s[i] < '0' || s[i] > '9')) return false;
            ulong ms, seq;
            if (!ulong.TryParse(s.Substring(0, dash), NumberStyles.None, CultureInfo.InvariantCulture, out ms) ||
                !ulong.TryParse(s.Substring(dash + 1), NumberStyles.None, CultureInfo.InvariantCulture, out seq))
                return false;
            id = new StoredId(ms, seq);
            return true;
        }

        public bool After(StoredId other) { return CompareTo(other) > 0; }

        public int CompareTo(StoredId other)
        {
            if (Ms != other.Ms) return Ms < other.Ms ? -1 : 1;
            if (Seq != other.Seq) return Seq < other.Seq ? -1 : 1;
            return 0;
        }

        public bool Equals(StoredId other) { return Ms == other.Ms && Seq == other.Seq; }
        public override bool Equals(object obj) { return obj is StoredId && Equals((StoredId)obj); }
        public override int GetHashCode() { return Ms.GetHashCode() * 31 + Seq.GetHashCode(); }

        public override string ToString()
        {
            return Ms.ToString(CultureInfo.InvariantCulture) + "-" + Seq.ToString(CultureInfo.InvariantCulture);
        }
    }
}
