namespace Herald
{
    /// <summary>What a frame from the server turned out to be.</summary>
    internal enum FrameKind
    {
        /// <summary>A message for the app.</summary>
        Message,
        /// <summary>A frame with a "type" ({"type":"pong"}): proof of life, nothing for the app.</summary>
        Control,
        /// <summary>Not a frame herald sends; error says why.</summary>
        Malformed,
    }

    /// <summary>Reads herald's frames into messages.</summary>
    internal static class Frame
    {
        /// <summary>
        /// Reads one frame. For a Message, m has Id, Key, Topic, Timestamp and
        /// DataJson set (IsStored and Stored are the caller's to decide).
        /// </summary>
        internal static FrameKind Read(string text, out HeraldMessage m, out string error)
        {
            m = null;
            error = null;
            JsonValue v;
            try
            {
                v = JsonValue.Parse(text);
            }
            catch (JsonException e)
            {
                error = "a frame from the server is not JSON: " + e.Message;
                return FrameKind.Malformed;
            }
            if (v.Kind != JsonKind.Object)
            {
                error = "a frame from the server is not a JSON object";
                return FrameKind.Malformed;
            }
            if (v["type"] != null) return FrameKind.Control;
            var idv = v["id"];
            var data = v["data"];
            string id = idv != null ? idv.AsString() : null;
            if (id == null || data == null)
            {
                error = "a frame from the server lacks \"id\" or \"data\"";
                return FrameKind.Malformed;
            }
            m = new HeraldMessage { Id = id, Data = data, DataJson = data.RawJson };
            var key = v["key"];
            var topic = v["topic"];
            var ts = v["ts"];
            m.Key = key != null ? key.AsString() : null;
            m.Topic = topic != null ? topic.AsString() : null;
            if (ts != null && ts.Kind == JsonKind.Number) m.Timestamp = ts.AsLong();
            return FrameKind.Message;
        }
    }
}
