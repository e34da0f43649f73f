using System;

namespace Herald
{
    /// <summary>A message from herald.</summary>
    public sealed class HeraldMessage
    {
        /// <summary>The message id; a stored message's is "&lt;ms&gt;-&lt;seq&gt;".</summary>
        public string Id { get; internal set; }
        /// <summary>The key it was sent to, or null.</summary>
        public string Key { get; internal set; }
        /// <summary>The topic it was published to, or null.</summary>
        public string Topic { get; internal set; }
        /// <summary>
        /// The data as a tree, parsed from DataJson the first time it is read
        /// (code that reads only DataJson never pays for it); null in raw mode.
        /// </summary>
        public JsonValue Data
        {
            get
            {
                if (data == null && parseData) data = JsonValue.Parse(DataJson); // checked already by FrameReader
                return data;
            }
        }
        /// <summary>The data's JSON text; in raw mode, the frame as received.</summary>
        public string DataJson { get; internal set; }

        JsonValue data;
        bool parseData;

        /// <summary>Sets the data's text, checked already, for Data to parse when read.</summary>
        internal void SetDataJson(string json)
        {
            DataJson = json;
            parseData = true;
        }
        /// <summary>When herald accepted it (Unix milliseconds); 0 in raw mode.</summary>
        public long Timestamp { get; internal set; }
        /// <summary>Whether it was stored (and can be acknowledged and resumed after).</summary>
        public bool IsStored { get; internal set; }

        internal StoredId Stored;

        /// <summary>The key stream's cursor this message was received into (see HeraldClient.ForKey).</summary>
        internal object Cursor;
    }

    /// <summary>Why the client is not connected.</summary>
    public sealed class HeraldDisconnect
    {
        /// <summary>The close code (4001, 4002, 1012...), or the HTTP status of a refused handshake, or 0.</summary>
        public int Code { get; internal set; }
        public string Reason { get; internal set; }
        /// <summary>True when the client stopped for good (4001, a refused token, a bad request).</summary>
        public bool Final { get; internal set; }

        public override string ToString() { return Code + " " + Reason + (Final ? " (final)" : ""); }
    }
}
